//! Which names the server answers to (the Host header a browser sends) and
//! which URL it prints, both following `--listen`.
//!
//! The Host check keeps a DNS-rebinding page out: a page of another site
//! whose name was pointed at this machine sends that site's name. So only
//! names of this machine pass: the loopback ones; the address it listens
//! on; and with `--allow-remote`, the machine's host name (as is and with
//! `.local`) and, when it listens on every address (`0.0.0.0`, `[::]`),
//! each address of its interfaces, so a browser on the LAN that types any
//! of them gets in.

use std::net::{IpAddr, SocketAddr};

/// The Host header values to accept, lower case, each with the port.
pub(super) fn accepted(addr: SocketAddr, allow_remote: bool) -> Vec<String> {
    let port = addr.port();
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    let mut names = vec!["localhost".to_string()];
    if addr.ip().is_unspecified() {
        ips.extend(interface_addresses());
    } else {
        ips.push(addr.ip());
    }
    if allow_remote {
        let host = snap_shared::hostname().to_lowercase();
        if !host.is_empty() {
            names.push(format!("{host}.local"));
            names.push(host);
        }
    }
    let mut hosts: Vec<String> = ips
        .iter()
        .map(|ip| host_port(*ip, port))
        .chain(names.iter().map(|n| format!("{n}:{port}")))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Whether a Host header names this server.
pub(super) fn is_accepted(hosts: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    hosts.contains(&host)
}

/// The URL to print: the address listened on; for every address, the
/// machine's name when others may connect, else loopback.
pub(super) fn url(addr: SocketAddr, allow_remote: bool) -> String {
    let port = addr.port();
    let host = match addr.ip() {
        ip if !ip.is_unspecified() => host_port(ip, port),
        _ if allow_remote && !snap_shared::hostname().is_empty() => {
            format!("{}:{port}", snap_shared::hostname().to_lowercase())
        }
        _ => format!("127.0.0.1:{port}"),
    };
    format!("http://{host}/")
}

/// `IP:PORT`, with brackets for IPv6 (as a URL and a Host header have it).
fn host_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// The addresses of this machine's interfaces (none when they cannot be read).
fn interface_addresses() -> Vec<IpAddr> {
    let Ok(all) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    all.filter_map(|i| {
        let a = i.address?;
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(IpAddr::V4(v4.ip()));
        }
        a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback names always; the listened address; the host name only with
    /// --allow-remote; every interface's address when listening on all.
    #[test]
    fn names_follow_listen() {
        let on = |s: &str| s.parse::<SocketAddr>().unwrap();
        let local = accepted(on("127.0.0.2:8080"), false);
        assert!(local.contains(&"127.0.0.2:8080".to_string()), "{local:?}");
        assert!(local.contains(&"localhost:8080".to_string()));
        assert!(local.contains(&"[::1]:8080".to_string()));
        let host = snap_shared::hostname().to_lowercase();
        assert!(!local.contains(&format!("{host}:8080")));
        let all = accepted(on("0.0.0.0:8080"), true);
        assert!(all.contains(&format!("{host}:8080")), "{all:?}");
        assert!(all.contains(&format!("{host}.local:8080")));
        for ip in interface_addresses() {
            assert!(all.contains(&host_port(ip, 8080)), "{ip} {all:?}");
        }
        assert!(is_accepted(&all, &format!("{}:8080", host.to_uppercase())));
        assert!(!is_accepted(&all, "evil.example:8080"));
        assert_eq!(url(on("[::1]:9"), false), "http://[::1]:9/");
        assert_eq!(url(on("127.0.0.2:9"), false), "http://127.0.0.2:9/");
        assert_eq!(url(on("0.0.0.0:9"), true), format!("http://{host}:9/"));
        assert_eq!(url(on("0.0.0.0:9"), false), "http://127.0.0.1:9/");
    }
}
