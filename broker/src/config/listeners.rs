//! `listeners`, `advertised.listeners` and `listener.security.protocol.map`, read as
//! Kafka reads them, and the refusal to start with security Fjord does not have.
//!
//! Until TLS and SASL land, every listener must map to `PLAINTEXT`: a listener its
//! operator believes is protected, served in the clear, would be worse than no start.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

/// One listener: where it binds and what clients that come in on it are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener's name (`PLAINTEXT`, or a name from the protocol map).
    pub name: String,
    /// The address bound (port 0: the OS picks one at bind).
    pub bind: SocketAddr,
    /// Host and port clients are told to connect to (port 0: the bound port).
    pub advertised: (String, u16),
}

/// `NAME://HOST:PORT`, split; an empty host is every interface.
fn endpoint(item: &str) -> Result<(String, String, u16)> {
    let (name, hostport) = item
        .split_once("://")
        .with_context(|| format!("'{item}' is not NAME://HOST:PORT"))?;
    let (host, port) = hostport
        .rsplit_once(':')
        .with_context(|| format!("'{item}' needs HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("'{item}': port must be 0-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() {
        bail!("'{item}' has no listener name");
    }
    Ok((name.to_ascii_uppercase(), host.to_string(), port))
}

fn endpoints(key: &str, value: &str) -> Result<Vec<(String, String, u16)>> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut out: Vec<(String, String, u16)> = Vec::with_capacity(items.len());
    for item in items {
        let e = endpoint(item).with_context(|| key.to_string())?;
        if out.iter().any(|(name, _, _)| *name == e.0) {
            bail!("{key}: listener name {} appears more than once", e.0);
        }
        out.push(e);
    }
    Ok(out)
}

/// `NAME:PROTOCOL` pairs.
fn protocol_map(value: &str) -> Result<Vec<(String, String)>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (name, protocol) = pair.split_once(':').with_context(|| {
                format!("listener.security.protocol.map: '{pair}' is not NAME:PROTOCOL")
            })?;
            Ok((
                name.trim().to_ascii_uppercase(),
                protocol.trim().to_ascii_uppercase(),
            ))
        })
        .collect()
}

/// Reads the listeners and their advertised addresses. Fails on a listener whose
/// security protocol is not PLAINTEXT, a name with no protocol, a repeated port, an
/// advertised listener with no bound one, or an address that does not resolve.
pub(super) fn parse(listeners: &str, advertised: &str, map: &str) -> Result<Vec<Listener>> {
    let bound = endpoints("listeners", listeners)?;
    if bound.is_empty() {
        bail!("listeners: at least one NAME://HOST:PORT is needed");
    }
    let protocols = protocol_map(map)?;
    let advertised = endpoints("advertised.listeners", advertised)?;
    if let Some((name, _, _)) = advertised
        .iter()
        .find(|(name, _, _)| !bound.iter().any(|(b, _, _)| b == name))
    {
        bail!("advertised.listeners names {name}, which is not in listeners");
    }
    let mut out = Vec::with_capacity(bound.len());
    for (name, host, port) in bound {
        let protocol = protocols
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.as_str())
            .with_context(|| {
                format!(
                    "listener {name} has no security protocol in listener.security.protocol.map"
                )
            })?;
        match protocol {
            "PLAINTEXT" => {}
            "SSL" | "SASL_PLAINTEXT" | "SASL_SSL" => bail!(
                "listener {name} asks for {protocol}, which Fjord does not support yet: \
                 refusing to start rather than serve it as PLAINTEXT"
            ),
            other => bail!("listener {name}: unknown security protocol {other}"),
        }
        if port != 0 && out.iter().any(|l: &Listener| l.bind.port() == port) {
            bail!("listeners: port {port} is used by more than one listener");
        }
        let bind_host = if host.is_empty() {
            "0.0.0.0"
        } else {
            host.as_str()
        };
        let bind = (bind_host, port)
            .to_socket_addrs()
            .with_context(|| format!("resolve listener {name} ({bind_host}:{port})"))?
            .next()
            .with_context(|| format!("listener {name} resolves to no address"))?;
        // No host (or every interface): clients on this machine can use loopback. Set
        // advertised.listeners for clients elsewhere.
        let own_host = if host.is_empty() || host == "0.0.0.0" || host == "::" {
            "127.0.0.1".to_string()
        } else {
            host.clone()
        };
        let advertised = match advertised.iter().find(|(n, _, _)| *n == name) {
            Some((_, h, p)) if !h.is_empty() => (h.clone(), *p),
            // An advertised entry without a host still names the port.
            Some((_, _, p)) => (own_host, *p),
            None => (own_host, port),
        };
        out.push(Listener {
            name,
            bind,
            advertised,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

    #[test]
    fn several_plaintext_listeners_each_advertise_their_own_address() {
        let l = parse(
            "PLAINTEXT://127.0.0.1:9092,INTERNAL://:9093",
            "INTERNAL://broker.example:19093",
            &format!("{MAP},INTERNAL:PLAINTEXT"),
        )
        .expect("listeners");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "PLAINTEXT");
        assert_eq!(l[0].bind, "127.0.0.1:9092".parse().expect("addr"));
        assert_eq!(l[0].advertised, ("127.0.0.1".to_string(), 9092));
        assert_eq!(l[1].bind, "0.0.0.0:9093".parse().expect("addr"));
        assert_eq!(l[1].advertised, ("broker.example".to_string(), 19093));
        // An advertised entry with no host keeps its port.
        let l = parse("PLAINTEXT://127.0.0.1:9092", "PLAINTEXT://:19092", MAP).expect("listeners");
        assert_eq!(l[0].advertised, ("127.0.0.1".to_string(), 19092));
    }

    #[test]
    fn security_protocols_stop_the_start() {
        for listeners in [
            "SASL_PLAINTEXT://127.0.0.1:1",
            "PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:2",
            "PLAINTEXT://127.0.0.1:1,SASL_SSL://127.0.0.1:2",
        ] {
            let e = parse(listeners, "", MAP).expect_err(listeners);
            assert!(
                format!("{e:#}").contains("does not support yet"),
                "{listeners}: {e:#}"
            );
        }
        // A named listener mapped to a security protocol is refused the same way.
        let e = parse("EXTERNAL://127.0.0.1:1", "", "EXTERNAL:SASL_SSL").expect_err("mapped");
        assert!(
            format!("{e:#}").contains("EXTERNAL asks for SASL_SSL"),
            "{e:#}"
        );
    }

    #[test]
    fn malformed_or_ambiguous_listeners_are_refused() {
        for (listeners, advertised) in [
            ("", ""),
            ("127.0.0.1:9092", ""),
            ("PLAINTEXT://127.0.0.1", ""),
            ("PLAINTEXT://127.0.0.1:70000", ""),
            ("PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2", ""),
            ("PLAINTEXT://127.0.0.1:1,OTHER://127.0.0.1:2", ""),
            ("PLAINTEXT://127.0.0.1:1", "OTHER://h:1"),
        ] {
            assert!(
                parse(listeners, advertised, MAP).is_err(),
                "{listeners} / {advertised}"
            );
        }
        let map = format!("{MAP},OTHER:PLAINTEXT");
        assert!(parse("PLAINTEXT://127.0.0.1:5,OTHER://127.0.0.1:5", "", &map).is_err());
        // Port 0 twice is fine: the OS picks two.
        assert!(parse("PLAINTEXT://127.0.0.1:0,OTHER://127.0.0.1:0", "", &map).is_ok());
    }
}
