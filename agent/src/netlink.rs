//! The routing questions the node-side IMDS guard asks, over rtnetlink in the calling
//! thread's network namespace: which interfaces lead to the blocked prefixes (every
//! routing table, since the VPC CNI routes pods on secondary ENIs through tables of their
//! own), and which interface leads to a pod's address.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// One route, as far as the guard cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix (`0.0.0.0/0` or `::/0` for a default route).
    pub destination: IpNet,
    /// Whether packets matching it leave the node (unicast), rather than being dropped
    /// (blackhole, unreachable, prohibit) or delivered locally.
    pub unicast: bool,
    /// The interfaces it sends through: its own, or each next hop's.
    pub interfaces: Vec<u32>,
}

/// Every route of every table, IPv4 and IPv6.
pub fn routes() -> io::Result<Vec<Route>> {
    let replies = request(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(message) => route(&message),
            _ => None,
        })
        .collect())
}

/// The interfaces through which some route sends traffic for an address in `blocked`.
pub fn uplinks(routes: &[Route], blocked: &[IpNet]) -> BTreeSet<u32> {
    routes
        .iter()
        .filter(|r| r.unicast && blocked.iter().any(|b| overlaps(&r.destination, b)))
        .flat_map(|r| r.interfaces.iter().copied())
        .collect()
}

/// The interface the node would send a packet for `address` through (`ip route get`).
pub fn route_to(address: IpAddr) -> io::Result<Option<u32>> {
    let mut message = RouteMessage::default();
    let (family, length) = match address {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    message.header.address_family = family;
    message.header.destination_prefix_length = length;
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::from(address)));
    let replies = match request(RouteNetlinkMessage::GetRoute(message), NLM_F_REQUEST) {
        Ok(replies) => replies,
        // No route at all: the address is not reachable from the node.
        Err(err) if err.raw_os_error() == Some(libc::ENETUNREACH) => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(replies.into_iter().find_map(|reply| match reply {
        RouteNetlinkMessage::NewRoute(message) => message.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        }),
        _ => None,
    }))
}

fn route(message: &RouteMessage) -> Option<Route> {
    let header = &message.header;
    let mut destination = None;
    let mut interfaces = Vec::new();
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                destination = Some(IpAddr::V4(*a));
            }
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                destination = Some(IpAddr::V6(*a));
            }
            RouteAttribute::Oif(index) => interfaces.push(*index),
            RouteAttribute::MultiPath(hops) => {
                interfaces.extend(hops.iter().map(|h| h.interface_index));
            }
            _ => {}
        }
    }
    let destination = match (header.address_family, destination) {
        (_, Some(address)) => IpNet::new(address, header.destination_prefix_length).ok()?,
        (AddressFamily::Inet, None) => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).ok()?,
        (AddressFamily::Inet6, None) => IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).ok()?,
        _ => return None,
    };
    Some(Route {
        destination,
        unicast: header.kind == RouteType::Unicast,
        interfaces,
    })
}

/// Whether two prefixes share an address (one contains the other, for prefixes).
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Sends one request and collects the replies: every part of a dump, or the one answer.
fn request(message: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut buffer = vec![0; packet.buffer_len()];
    packet.serialize(&mut buffer);
    socket.send(&buffer, 0)?;

    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut replies = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let length = usize::try_from(reply.header.length).unwrap_or(0);
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Error(error) if error.code.is_some() => return Err(error.to_io()),
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                _ => {}
            }
            if length == 0 || length > rest.len() {
                break;
            }
            rest = &rest[length..];
        }
        // A request that is not a dump is answered in one datagram.
        if !dump {
            return Ok(replies);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("valid prefix")
    }

    fn route(destination: &str, unicast: bool, interfaces: &[u32]) -> Route {
        Route {
            destination: net(destination),
            unicast,
            interfaces: interfaces.to_vec(),
        }
    }

    #[test]
    fn default_host_and_covering_routes_lead_to_imds() {
        let routes = [
            route("0.0.0.0/0", true, &[2]),
            route("169.254.169.254/32", true, &[3]),
            route("169.254.0.0/16", true, &[4, 5]),
            route("10.0.0.0/8", true, &[6]),
            route("::/0", true, &[7]),
            route("fd00:ec2::254/128", false, &[8]),
        ];
        let blocked = [net("169.254.169.254/32"), net("fd00:ec2::254/128")];
        assert_eq!(uplinks(&routes, &blocked), BTreeSet::from([2, 3, 4, 5, 7]));
    }

    #[test]
    fn a_route_inside_a_blocked_prefix_counts() {
        let routes = [route("169.254.169.0/24", true, &[9])];
        assert_eq!(
            uplinks(&routes, &[net("169.254.0.0/16")]),
            BTreeSet::from([9])
        );
    }

    #[test]
    fn the_loopback_routes_of_this_namespace_are_read() {
        let routes = routes().expect("route dump");
        assert!(
            routes
                .iter()
                .any(|r| r.destination.addr() == IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{routes:?}"
        );
        assert_eq!(
            route_to(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("route get"),
            Some(1)
        );
    }
}
