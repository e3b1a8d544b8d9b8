//! The per-stream Secret with the slave pods' credentials.
//!
//! The chart keeps the cluster token and the Redis/NATS URLs in a Secret in the release's
//! namespace, but Streams (and so slave pods) may live in any namespace and pods can only read
//! Secrets of their own. The operator therefore copies what the slaves need next to them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{ChildNames, Parent, WorkerSettings};

/// Secret key of the cluster token.
pub const CLUSTER_TOKEN_KEY: &str = "cluster-token";
/// Secret key of the Redis URL.
pub const REDIS_URL_KEY: &str = "redis-url";
/// Secret key of the NATS URL.
pub const NATS_URL_KEY: &str = "nats-url";

pub(super) fn build(parent: &Parent, names: &ChildNames, settings: &WorkerSettings) -> Secret {
    let data = [
        (CLUSTER_TOKEN_KEY, &settings.cluster_token),
        (REDIS_URL_KEY, &settings.redis_url),
        (NATS_URL_KEY, &settings.nats_url),
    ]
    .into_iter()
    .map(|(key, value)| {
        (
            key.to_owned(),
            ByteString(value.expose().as_bytes().to_vec()),
        )
    })
    .collect::<BTreeMap<_, _>>();
    Secret {
        metadata: parent.metadata(&names.slave),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{settings, stream};

    #[test]
    fn holds_the_token_and_urls_under_fixed_keys() {
        let s = stream("live");
        let parent = Parent::of(&s).unwrap();
        let secret = build(&parent, &ChildNames::of(&s), &settings());
        assert_eq!(secret.metadata.name.as_deref(), Some("live-slave"));
        let data = secret.data.unwrap();
        assert_eq!(data[CLUSTER_TOKEN_KEY].0, b"cluster-secret");
        assert_eq!(data[REDIS_URL_KEY].0, b"redis://redis:6379");
        assert_eq!(data[NATS_URL_KEY].0, b"nats://nats:4222");
    }
}
