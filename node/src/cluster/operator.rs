//! The cluster's membership, as the operator manages it: `confab cluster init | add |
//! remove | show`, run off the nodes, where the operator key lives. Each change signs a new
//! document with the next epoch; every node gets a copy (the nodes' side, gossip and the
//! allow-list, comes with the control plane).

use std::path::Path;

use anyhow::{Context, bail};
use confab_keys::{Member, Membership, MembershipBody, OperatorKey, Roles};

use crate::cli::{ClusterCommand, ClusterFiles};
use crate::{clock, datadir, secrets};

pub fn command(command: ClusterCommand) -> anyhow::Result<()> {
    let now = clock::now();
    match command {
        ClusterCommand::Init { files } => {
            if files.membership.exists() {
                bail!("{} exists already: this cluster is set up (use `cluster add`)", files.membership.display());
            }
            let operator = datadir::load_or_create_operator_key(&files.operator_key)?;
            let cluster = secrets::random_bytes::<16>();
            let signed = operator.sign_membership(MembershipBody::new(cluster, 1, now, Vec::new())?);
            write(&files.membership, &signed)?;
            println!("Cluster {} (epoch 1, no members yet).", secrets::hex(&cluster));
            println!("Operator key: {} (public {}). Keep it off the nodes.", files.operator_key.display(), secrets::hex(&operator.public()));
            println!("Next: on each node run `confab node-key`, then `confab cluster add --node-key <it> --address <host:port>`.");
        }
        ClusterCommand::Add { files, node_key, addresses, roles, expires } => {
            let (operator, current) = open(&files, now)?;
            let node_key = parse_node_key(&node_key)?;
            let roles = parse_roles(&roles)?;
            let mut members: Vec<Member> = current.body().members.iter().filter(|m| m.node_key != node_key).cloned().collect();
            let replaced = members.len() < current.body().members.len();
            members.push(Member { node_key, roles, expires: now + expires.secs(), addresses });
            let signed = next(&operator, &current, members, now)?;
            write(&files.membership, &signed)?;
            println!(
                "{} {} as {} (epoch {}, {} members).",
                if replaced { "Changed" } else { "Added" },
                secrets::hex(&node_key),
                roles.names().join(","),
                signed.body().epoch,
                signed.body().members.len()
            );
        }
        ClusterCommand::Remove { files, node_key } => {
            let (operator, current) = open(&files, now)?;
            let node_key = parse_node_key(&node_key)?;
            let members: Vec<Member> = current.body().members.iter().filter(|m| m.node_key != node_key).cloned().collect();
            if members.len() == current.body().members.len() {
                bail!("{} is not a member", secrets::hex(&node_key));
            }
            let signed = next(&operator, &current, members, now)?;
            write(&files.membership, &signed)?;
            println!("Removed {} (epoch {}, {} members).", secrets::hex(&node_key), signed.body().epoch, signed.body().members.len());
        }
        ClusterCommand::Show { files } => {
            let (_, current) = open(&files, now)?;
            let body = current.body();
            println!("Cluster {}, epoch {}, issued {}", secrets::hex(&body.cluster), body.epoch, clock::format_utc(body.issued));
            for m in &body.members {
                let state = if now < m.expires { "member" } else { "EXPIRED" };
                println!(
                    "  {}  {:<14} until {}  {}  {}",
                    secrets::hex(&m.node_key),
                    m.roles.names().join(","),
                    clock::format_utc(m.expires),
                    state,
                    m.addresses.join(" ")
                );
            }
        }
    }
    Ok(())
}

/// The operator key and the current document, verified with it.
fn open(files: &ClusterFiles, now: u64) -> anyhow::Result<(OperatorKey, Membership)> {
    let operator = datadir::load_operator_key(&files.operator_key)?;
    let text = std::fs::read_to_string(&files.membership)
        .with_context(|| format!("cannot read the membership {} (made by `confab cluster init`)", files.membership.display()))?;
    let current = Membership::from_text(&text).with_context(|| format!("{} is not a membership document", files.membership.display()))?;
    let cluster = current.body().cluster;
    current
        .verify(&operator.public(), &cluster, now)
        .with_context(|| format!("{} does not verify with {}", files.membership.display(), files.operator_key.display()))?;
    Ok((operator, current))
}

/// The next epoch with `members`.
fn next(operator: &OperatorKey, current: &Membership, members: Vec<Member>, now: u64) -> anyhow::Result<Membership> {
    let body = current.body();
    let next = MembershipBody::new(body.cluster, body.epoch + 1, now.max(body.issued), members)?;
    Ok(operator.sign_membership(next))
}

fn write(path: &Path, membership: &Membership) -> anyhow::Result<()> {
    // A new file beside it, then a rename: a crash never leaves half a document.
    let tmp = path.with_extension("cfm.new");
    std::fs::write(&tmp, format!("{}\n", membership.to_text())).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn parse_node_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    super::parse_key(hex, "a node key (as `confab node-key` prints it)")
}

fn parse_roles(text: &str) -> anyhow::Result<Roles> {
    let mut roles = Roles::empty();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        roles = roles.with(match name {
            "media" => Roles::MEDIA,
            "accounts" => Roles::ACCOUNTS,
            other => bail!("unknown role {other:?}: expected media, accounts or both (accounts,media)"),
        });
    }
    if roles == Roles::empty() {
        bail!("a member needs at least one role (media, accounts)");
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_and_roles_are_parsed_strictly() {
        let key = confab_keys::NodeKey::from_seed([1; 32]).public();
        assert_eq!(parse_node_key(&secrets::hex(&key)).unwrap(), key);
        assert!(parse_node_key("abc").is_err());
        assert!(parse_node_key(&"zz".repeat(32)).is_err());
        assert_eq!(parse_roles("accounts, media").unwrap(), Roles::ACCOUNTS.with(Roles::MEDIA));
        assert!(parse_roles("dns").is_err());
        assert!(parse_roles("").is_err());
    }
}
