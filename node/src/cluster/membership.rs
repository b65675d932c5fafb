//! A node's view of its cluster's membership, sans-IO: the operator key it trusts, the
//! highest valid epoch it has seen, and the questions the rest of the node asks of it (is
//! this peer a member, which node keys sign certificates we honour, who holds the
//! accounts). Documents arrive from the operator's file, from the data directory and from
//! gossip; all go through [`View::offer`].

use confab_keys::{Member, Membership, MembershipError, Roles, UnixTime};

/// What became of a document offered to the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// A higher epoch: the view follows it now.
    Adopted { epoch: u64 },
    /// Valid, but not newer than what the view holds.
    NotNewer,
    /// Not to be followed: another operator or cluster, altered, or issued in the future.
    Refused(MembershipError),
}

/// The membership a node follows.
#[derive(Debug, Clone)]
pub struct View {
    operator: [u8; 32],
    current: Membership,
}

impl View {
    /// Starts from the first valid document among `candidates` (the operator's file, the copy
    /// persisted in the data directory): the highest epoch of the cluster of the first valid
    /// one. Every candidate must be signed by `operator`.
    pub fn from_documents(operator: [u8; 32], candidates: &[Membership], now: UnixTime) -> Result<View, MembershipError> {
        let mut view: Option<View> = None;
        let mut first_error = None;
        for doc in candidates {
            match &mut view {
                None => match doc.verify(&operator, &doc.body().cluster, now) {
                    Ok(_) => view = Some(View { operator, current: doc.clone() }),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                },
                Some(v) => {
                    if let Offer::Refused(e) = v.offer(doc, now) {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        view.ok_or_else(|| first_error.unwrap_or(MembershipError::WrongOperator))
    }

    /// Follows `doc` if the operator signed it for this cluster and its epoch is higher.
    pub fn offer(&mut self, doc: &Membership, now: UnixTime) -> Offer {
        if let Err(e) = doc.verify(&self.operator, &self.current.body().cluster, now) {
            return Offer::Refused(e);
        }
        if !doc.supersedes(&self.current) {
            return Offer::NotNewer;
        }
        self.current = doc.clone();
        Offer::Adopted { epoch: doc.body().epoch }
    }

    pub fn document(&self) -> &Membership {
        &self.current
    }

    pub fn epoch(&self) -> u64 {
        self.current.body().epoch
    }

    pub fn cluster(&self) -> [u8; 16] {
        self.current.body().cluster
    }

    /// The members whose membership lasts at `now`.
    pub fn members(&self, now: UnixTime) -> impl Iterator<Item = &Member> {
        self.current.body().members.iter().filter(move |m| now < m.expires)
    }

    pub fn member(&self, node_key: &[u8; 32], now: UnixTime) -> Option<&Member> {
        self.current.body().member(node_key, now)
    }

    /// The node keys whose certificates every member honours.
    pub fn node_keys(&self, now: UnixTime) -> Vec<[u8; 32]> {
        self.members(now).map(|m| m.node_key).collect()
    }

    /// The member holding the accounts database (the first listed, should the operator name
    /// several).
    pub fn accounts_node(&self, now: UnixTime) -> Option<[u8; 32]> {
        self.members(now).find(|m| m.roles.contains(Roles::ACCOUNTS)).map(|m| m.node_key)
    }

    /// Members that serve participants.
    pub fn media_nodes(&self, now: UnixTime) -> Vec<[u8; 32]> {
        self.members(now).filter(|m| m.roles.contains(Roles::MEDIA)).map(|m| m.node_key).collect()
    }
}

#[cfg(test)]
mod tests {
    use confab_keys::{MembershipBody, NodeKey, OperatorKey};

    use super::*;

    const NOW: UnixTime = 1_800_000_000;

    fn member(seed: u8, roles: Roles, expires: UnixTime) -> Member {
        Member { node_key: NodeKey::from_seed([seed; 32]).public(), roles, expires, addresses: vec![format!("10.0.0.{seed}:7000")] }
    }

    fn doc(operator: &OperatorKey, cluster: [u8; 16], epoch: u64, members: Vec<Member>) -> Membership {
        operator.sign_membership(MembershipBody::new(cluster, epoch, NOW - 10, members).unwrap())
    }

    #[test]
    fn the_highest_epoch_of_one_cluster_by_one_operator_wins() {
        let op = OperatorKey::from_seed([1; 32]);
        let e1 = doc(&op, [5; 16], 1, vec![member(1, Roles::ACCOUNTS.with(Roles::MEDIA), NOW + 100)]);
        let e2 = doc(&op, [5; 16], 2, vec![member(1, Roles::ACCOUNTS.with(Roles::MEDIA), NOW + 100), member(2, Roles::MEDIA, NOW + 100)]);
        // The data directory's copy may be newer than the operator's file, or older.
        let view = View::from_documents(op.public(), &[e1.clone(), e2.clone()], NOW).unwrap();
        assert_eq!(view.epoch(), 2);
        let mut view = View::from_documents(op.public(), &[e2.clone(), e1.clone()], NOW).unwrap();
        assert_eq!(view.epoch(), 2);
        assert_eq!(view.offer(&e1, NOW), Offer::NotNewer);
        assert_eq!(view.offer(&e2, NOW), Offer::NotNewer);

        let e3 = doc(&op, [5; 16], 3, vec![member(2, Roles::MEDIA, NOW + 100)]);
        assert_eq!(view.offer(&e3, NOW), Offer::Adopted { epoch: 3 });
        assert!(view.member(&NodeKey::from_seed([1; 32]).public(), NOW).is_none());
        assert_eq!(view.accounts_node(NOW), None);

        // Another cluster of the same operator, another operator, an altered document.
        let elsewhere = doc(&op, [6; 16], 9, vec![]);
        assert_eq!(view.offer(&elsewhere, NOW), Offer::Refused(MembershipError::WrongCluster));
        let stranger = OperatorKey::from_seed([2; 32]);
        assert_eq!(view.offer(&doc(&stranger, [5; 16], 9, vec![]), NOW), Offer::Refused(MembershipError::WrongOperator));
        assert_eq!(view.epoch(), 3);
    }

    #[test]
    fn expired_members_count_for_nothing() {
        let op = OperatorKey::from_seed([1; 32]);
        let d = doc(&op, [5; 16], 1, vec![member(1, Roles::ACCOUNTS.with(Roles::MEDIA), NOW + 100), member(2, Roles::MEDIA, NOW - 1)]);
        let view = View::from_documents(op.public(), &[d], NOW).unwrap();
        assert_eq!(view.node_keys(NOW), vec![NodeKey::from_seed([1; 32]).public()]);
        assert_eq!(view.media_nodes(NOW).len(), 1);
        assert_eq!(view.accounts_node(NOW), Some(NodeKey::from_seed([1; 32]).public()));
        assert!(view.node_keys(NOW + 100).is_empty());
    }

    #[test]
    fn a_node_starts_only_from_a_document_its_operator_signed() {
        let op = OperatorKey::from_seed([1; 32]);
        let stranger = OperatorKey::from_seed([2; 32]);
        let d = doc(&stranger, [5; 16], 1, vec![]);
        assert_eq!(View::from_documents(op.public(), &[d], NOW).unwrap_err(), MembershipError::WrongOperator);
    }
}
