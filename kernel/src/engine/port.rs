//! Free TCP ports for server engines.

use std::net::{Ipv4Addr, TcpListener};

/// A port free on 127.0.0.1 right now. The engine binds it shortly after; the
/// window for another process to take it is small and the health wait
/// reports it if that happens.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_free_and_usable() {
        let port = super::free_port().unwrap();
        assert!(port > 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
