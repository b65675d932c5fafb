//! Where the embedded TURN relay may send: only to public addresses. A relay that would
//! forward to loopback, link-local or private ranges lets anyone with a credential reach
//! this machine's own services and its neighbours; it is refused by default (the option to
//! allow private peers is for networks where the participants themselves are private).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a TURN allocation may relay to `peer`.
pub fn peer_allowed(peer: IpAddr, allow_private: bool) -> bool {
    match peer {
        IpAddr::V4(v4) => v4_allowed(v4, allow_private),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_allowed(v4, allow_private),
            None => v6_allowed(v6, allow_private),
        },
    }
}

fn v4_allowed(ip: Ipv4Addr, allow_private: bool) -> bool {
    let [a, b, ..] = ip.octets();
    // Never: nowhere, this host, broadcast and multicast, whatever the option says.
    if ip.is_unspecified() || ip.is_loopback() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
        return false;
    }
    let private = ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240; // reserved
    allow_private || !private
}

fn v6_allowed(ip: Ipv6Addr, allow_private: bool) -> bool {
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return false;
    }
    let first = ip.segments()[0];
    let private = (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0; // site-local (deprecated)
    allow_private || !private
}

/// Every address of this host's network interfaces (`getifaddrs`): a relay must not reach the
/// node's own services through its public address either.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we walk read-only and free once.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return addresses;
    }
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says which struct it is.
            match i32::from(unsafe { (*entry.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let v4 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                    addresses.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    let v6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                    addresses.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: the list came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(text: &str, allow_private: bool) -> bool {
        peer_allowed(text.parse().unwrap(), allow_private)
    }

    #[test]
    fn only_public_peers_by_default() {
        for public in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "::ffff:198.51.100.1"] {
            assert!(allowed(public, false), "{public}");
        }
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!allowed(private, false), "{private}");
            assert!(allowed(private, true) || private.contains("127.0.0.1"), "{private} with private peers allowed");
        }
    }

    #[test]
    fn this_hosts_interfaces_include_loopback() {
        assert!(interface_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn never_this_host_or_nowhere() {
        for never in ["127.0.0.1", "127.1.2.3", "0.0.0.0", "0.1.2.3", "255.255.255.255", "224.0.0.1", "::1", "::", "ff02::1"] {
            assert!(!allowed(never, false), "{never}");
            assert!(!allowed(never, true), "{never} even with private peers allowed");
        }
    }
}
