//! Where NATS is: one URL, or the comma-separated list of a cluster's members that NATS clients
//! conventionally take (`nats://a:4222,nats://b:4222,nats://c:4222`). The client connects to one of them,
//! learns the rest of the cluster from it, and moves to another member when that one goes away; a list
//! only matters for the first connection, when the member it names first may be down. A Kubernetes
//! Service name in front of the cluster is one URL that does the same.

use async_nats::ServerAddr;

/// The servers of `urls`, a URL or a comma-separated list of them (`nats://` or `tls://`, blanks
/// around commas ignored); the reason a list is unusable otherwise.
pub fn server_addrs(urls: &str) -> Result<Vec<ServerAddr>, String> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return Err(format!("{url:?} is not a nats:// or tls:// URL"));
            }
            url.parse::<ServerAddr>().map_err(|e| format!("{url:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("no server: expected nats://host:port, or a comma-separated list of them".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_a_comma_separated_list_of_its_members() {
        let addrs = server_addrs("nats://a:4222, nats://b:4222,nats://c:4222").unwrap();
        let hosts: Vec<String> = addrs.iter().map(|a| format!("{}:{}", a.host(), a.port())).collect();
        assert_eq!(hosts, ["a:4222", "b:4222", "c:4222"]);
        assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        assert_eq!(server_addrs("tls://nats.example.com:4222").unwrap().len(), 1);
    }

    #[test]
    fn an_entry_that_is_no_nats_url_is_refused_naming_it() {
        for bad in [
            "",
            " , ",
            "127.0.0.1:4222",
            "nats://a:4222,http://b:4222",
            "nats://a:notaport",
        ] {
            assert!(server_addrs(bad).is_err(), "{bad:?}");
        }
        assert!(
            server_addrs("nats://a:4222,http://b:4222")
                .unwrap_err()
                .contains("http://b:4222")
        );
    }
}
