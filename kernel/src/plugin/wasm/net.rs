//! Network grants: `[plugins.X.sandbox] connect = ["host:port", …]` becomes an
//! allow-list of socket addresses checked on every `wasi:sockets` use. Nothing
//! else is reachable: no listening, no UDP, no other address or port.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Where a plugin may connect, resolved when its store is built.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnectGrants {
    pub addrs: HashSet<SocketAddr>,
    /// Some grant names a host rather than an address, so the plugin needs
    /// `ip-name-lookup` to find what the kernel resolved.
    pub names: bool,
}

/// Resolve each `host:port` grant (host names through the system resolver).
pub fn resolve(grants: &[String]) -> Result<ConnectGrants, String> {
    let mut out = ConnectGrants::default();
    for grant in grants {
        let (host, port) = grant.rsplit_once(':').ok_or_else(|| {
            format!("`connect` entry `{grant}` is not `host:port` (e.g. \"127.0.0.1:9091\")")
        })?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!("`connect` entry `{grant}`: `{port}` is not a port (1-65535)")
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().is_err() {
            out.names = true;
        }
        let found = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("`connect` entry `{grant}`: cannot resolve `{host}`: {e}"))?;
        out.addrs.extend(found);
    }
    Ok(out)
}

/// Deny by default; with grants, TCP connections to exactly those addresses.
pub fn apply(wasi: &mut WasiCtxBuilder, grants: &[String]) -> Result<(), String> {
    let resolved = resolve(grants)?;
    if resolved.addrs.is_empty() {
        wasi.allow_tcp(false).allow_ip_name_lookup(false);
        return Ok(());
    }
    // Name lookup lets the plugin resolve names (any name: wasmtime has no
    // per-name filter), so it is only on when a grant names a host.
    wasi.allow_tcp(true).allow_ip_name_lookup(resolved.names);
    let allowed = Arc::new(resolved.addrs);
    wasi.socket_addr_check(move |addr, usage| {
        let ok = permitted(&allowed, addr, usage);
        Box::pin(async move { ok })
    });
    Ok(())
}

fn permitted(allowed: &HashSet<SocketAddr>, addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpConnect => allowed.contains(&addr),
        // `connect` binds implicitly to the wildcard address and an ephemeral
        // port first; any other bind (a chosen port, an address) is refused.
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_addresses_and_ports_exactly() {
        let g = resolve(&["127.0.0.1:9091".into(), "[::1]:80".into()]).unwrap();
        let a: SocketAddr = "127.0.0.1:9091".parse().unwrap();
        let b: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(g.addrs, HashSet::from([a, b]));
        assert!(!g.names);
        assert!(permitted(&g.addrs, a, SocketAddrUse::TcpConnect));
        let other_port: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        assert!(!permitted(&g.addrs, other_port, SocketAddrUse::TcpConnect));
        assert!(!permitted(&g.addrs, a, SocketAddrUse::TcpListen));
        assert!(!permitted(&g.addrs, a, SocketAddrUse::UdpBind));
        assert!(!permitted(&g.addrs, a, SocketAddrUse::TcpBind));
        let wildcard: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(permitted(&g.addrs, wildcard, SocketAddrUse::TcpBind));
    }

    #[test]
    fn names_resolve_and_bad_entries_are_refused() {
        let g = resolve(&["localhost:8080".into()]).unwrap();
        assert!(g.names);
        assert!(
            g.addrs
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback())
        );
        for bad in ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:http", "h:70000"] {
            assert!(resolve(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
