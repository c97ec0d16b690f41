//! The remote layer cache of a build (`--cache-from`, `--cache-to`): registry repositories
//! holding layer records (their format: [`crate::registry::RegistryClient::cache_lookup`]'s
//! module, `registry/client/cache.rs`).
//!
//! - **Lookups** are steps of the executor: a layer the local store misses is looked up, under
//!   its key's lock, in each `--cache-from` repository in order before it is built. A hit is
//!   `Fresh` with the repository it came from ([`Event::LayerFinished`]'s `remote`).
//! - **Bytes are fetched lazily**: a hit whose bytes a local output, a later stage (copies, a
//!   base's filesystem) or a loader check needs is downloaded once, verified against its digest,
//!   into the store and recorded under its key there. A build that only pushes
//!   ([`super::BuildOptions::no_output`]) leaves the other hits in the registry: the store
//!   remembers the cache repository holds them, and the push mounts them from there.
//! - **Exports** run once the graph is executed: every layer of the build not taken from the
//!   very repository is recorded in each `--cache-to` repository (its blob, then its record),
//!   and every layer with an alias key (its files clean in git's index, see `plan`) gets an
//!   alias record there too.
//! - **Aliases** are asked while planning: a layer whose files the stat index does not know
//!   but git's index vouches for is keyed from an alias record ([`RemoteCache::resolve_alias`])
//!   without reading its files. The alias record also names the key's layer, so the lookup of
//!   that key in the same repository takes it from there instead of asking for the key's
//!   record (one request less per layer; the layer's blob is still checked or downloaded).
//! - **One registry client**, made on first use, shares what it learns of registries (their
//!   protocol, whether they ask for credentials, the TLS roots) with the push's and the bases'
//!   clients of the invocation ([`crate::registry::Learnt`]), so no registry is probed twice.
//!
//! The cache is an optimisation, never a failure: the first fault (the registry down or slow,
//! refused credentials, a 5xx, a record whose blob is gone or whose bytes do not match their
//! digest) gives one [`Event::CacheWarning`] and turns the remote cache off for the rest of the
//! build, whose layers are then built locally. A blob that fails verification is never stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{Error, Event};
use crate::registry::{Learnt, Reference, RegistryClient, RegistryOptions, RetryPolicy};
use crate::store::{LayerRecord, NodeResult, Store};

/// How long connecting to a cache registry may take before it counts as down.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a cache registry may stay silent in the middle of an answer.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The remote caches of one build.
pub(super) struct RemoteCache<'a> {
    from: Vec<Reference>,
    to: Vec<Reference>,
    options: RegistryOptions,
    learnt: Learnt,
    client: OnceLock<Option<RegistryClient>>,
    /// The layers alias records named, by node key, with the index of the `--cache-from`
    /// repository the record was read from.
    aliased: Mutex<HashMap<String, (usize, LayerRecord)>>,
    /// The registries of a build that only pushes: a hit of a cache on each of them may stay
    /// there (the push mounts it); `None` for a build with a local output.
    only_pushing_to: Option<Vec<String>>,
    /// Set by the first fault: the cache is not asked again.
    off: AtomicBool,
    on_event: &'a (dyn Fn(Event) + Sync),
}

/// A layer found in a remote cache.
pub(super) struct RemoteHit {
    pub layer: LayerRecord,
    /// `registry/repository` of the cache it came from.
    pub repository: String,
}

impl<'a> RemoteCache<'a> {
    /// The caches `from` and `to` (checked references); `None` when there are none.
    pub fn new(
        from: &[String],
        to: &[String],
        options: &RegistryOptions,
        learnt: &Learnt,
        on_event: &'a (dyn Fn(Event) + Sync),
    ) -> Result<Option<Self>, Error> {
        if from.is_empty() && to.is_empty() {
            return Ok(None);
        }
        let parse = |list: &[String]| -> Result<Vec<Reference>, Error> {
            list.iter()
                .map(|r| {
                    let parsed = Reference::parse(r).and_then(|p| {
                        Reference::from_parts(p.registry(), p.repository(), None, None)
                    });
                    parsed.map_err(|source| Error::CacheReference {
                        reference: r.clone(),
                        source,
                    })
                })
                .collect()
        };
        // A cache that does not answer (down, or slow) is given up quickly: it only saves time.
        let mut options = options.clone();
        options.retry = RetryPolicy {
            attempts: 2,
            ..options.retry
        };
        options.connect_timeout = options.connect_timeout.min(CONNECT_TIMEOUT);
        options.read_timeout = options.read_timeout.min(READ_TIMEOUT);
        Ok(Some(Self {
            from: parse(from)?,
            to: parse(to)?,
            options,
            learnt: learnt.clone(),
            client: OnceLock::new(),
            aliased: Mutex::default(),
            only_pushing_to: None,
            off: AtomicBool::new(false),
            on_event,
        }))
    }

    /// Says the build only pushes, to these repositories: hits of a cache on the registry of
    /// every one of them are left there (mounted by the push) unless their bytes are needed.
    pub fn only_pushing_to(mut self, repositories: &[String]) -> Self {
        self.only_pushing_to = Some(
            repositories
                .iter()
                .filter_map(|r| Reference::parse(r).ok())
                .map(|r| r.registry().to_owned())
                .collect(),
        );
        self
    }

    /// The client, made on first use.
    fn client(&self) -> Option<&RegistryClient> {
        self.client
            .get_or_init(
                || match RegistryClient::sharing(self.options.clone(), &self.learnt) {
                    Ok(client) => Some(client),
                    Err(e) => {
                        self.fault("", &e);
                        None
                    }
                },
            )
            .as_ref()
    }

    /// Reports the first fault, and turns the cache off.
    fn fault(&self, repository: &str, e: &dyn std::error::Error) {
        if self.off.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        (self.on_event)(Event::CacheWarning {
            repository: repository.to_owned(),
            message,
        });
    }

    fn is_off(&self) -> bool {
        self.off.load(Ordering::SeqCst)
    }

    /// Looks node `key` up in each `--cache-from` repository in order. A hit's blob is
    /// downloaded into the store (verified) and recorded under `key` there, unless its bytes
    /// are not needed (`need_bytes` false) and the build only pushes to the cache's registry:
    /// then the registry is only asked that it has the blob, and the store remembers where it
    /// is, for the push to mount it.
    pub fn take(&self, key: &str, store: &Store, need_bytes: bool) -> Option<RemoteHit> {
        for (at, cache) in self.from.iter().enumerate() {
            if self.is_off() {
                return None;
            }
            let client = self.client()?;
            let repository = cache.name();
            let layer = match self.aliased_layer(key, at) {
                Some(layer) => Ok(Some(layer)),
                None => client.cache_lookup(cache, key),
            };
            let layer = match layer {
                Ok(Some(layer)) => layer,
                Ok(None) => continue,
                Err(e) => {
                    self.fault(&repository, &e);
                    return None;
                }
            };
            // Left in the registry only when every push can mount it from there.
            let stays = !need_bytes
                && self.only_pushing_to.as_ref().is_some_and(|registries| {
                    !registries.is_empty() && registries.iter().all(|r| r == cache.registry())
                });
            let got = if !stays {
                client
                    .cache_fetch(cache, &layer, store)
                    .map(|_| ())
                    .and_then(|()| {
                        store
                            .put_key(key, &NodeResult::Layer(layer.clone()))
                            .map_err(|e| crate::registry::Error::StoreBlob {
                                reference: repository.clone(),
                                digest: layer.digest.clone(),
                                source: Box::new(e),
                            })
                    })
            } else {
                client.cache_has_blob(cache, &layer, store)
            };
            if let Err(e) = got {
                self.fault(&repository, &e);
                return None;
            }
            return Some(RemoteHit { layer, repository });
        }
        None
    }

    /// The node key that alias key `alias` stands for, from the first `--cache-from`
    /// repository with an alias record of it (nothing downloaded); planning asks it for a layer
    /// whose files git's index vouches for and the stat index does not know.
    pub fn resolve_alias(&self, alias: &str) -> Option<String> {
        for (at, cache) in self.from.iter().enumerate() {
            if self.is_off() {
                return None;
            }
            let client = self.client()?;
            match client.cache_alias_lookup(cache, alias) {
                Ok(Some((key, layer))) => {
                    self.aliased
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key.clone(), (at, layer));
                    return Some(key);
                }
                Ok(None) => {}
                Err(e) => {
                    self.fault(&cache.name(), &e);
                    return None;
                }
            }
        }
        None
    }

    /// The layer of node `key` an alias record of the `--cache-from` repository number `at`
    /// named, if one did (see the module docs).
    fn aliased_layer(&self, key: &str, at: usize) -> Option<LayerRecord> {
        let aliased = self.aliased.lock().unwrap_or_else(|p| p.into_inner());
        aliased
            .get(key)
            .filter(|(from, _)| *from == at)
            .map(|(_, layer)| layer.clone())
    }

    /// The first `--cache-from` repository with a record of node `key`, asked without
    /// downloading anything (what `cargo image plan --cache-from` reports).
    pub fn find(&self, key: &str) -> Option<String> {
        for (at, cache) in self.from.iter().enumerate() {
            if self.is_off() {
                return None;
            }
            let client = self.client()?;
            if self.aliased_layer(key, at).is_some() {
                return Some(cache.name());
            }
            match client.cache_lookup(cache, key) {
                Ok(Some(_)) => return Some(cache.name()),
                Ok(None) => {}
                Err(e) => {
                    self.fault(&cache.name(), &e);
                    return None;
                }
            }
        }
        None
    }

    /// Records `layers` (node key, layer, the cache repository it came from) in each
    /// `--cache-to` repository, with an alias record for each layer `aliases` gives an alias
    /// key (by node key, hex); returns how many records were written.
    pub fn export(
        &self,
        layers: &[(String, LayerRecord, Option<String>)],
        aliases: &HashMap<String, String>,
        store: &Store,
    ) {
        for cache in &self.to {
            let repository = cache.name();
            let mut written = 0;
            for (key, layer, from) in layers {
                if self.is_off() {
                    return;
                }
                let Some(client) = self.client() else {
                    return;
                };
                let record = if from.as_deref() == Some(repository.as_str()) {
                    Ok(false)
                } else {
                    client.cache_export(cache, key, layer, store)
                };
                let alias = record.and_then(|wrote| match aliases.get(key) {
                    Some(alias) => client
                        .cache_export_alias(cache, alias, key, layer, store)
                        .map(|a| wrote | a),
                    None => Ok(wrote),
                });
                match alias {
                    Ok(true) => written += 1,
                    Ok(false) => {}
                    Err(e) => {
                        self.fault(&repository, &e);
                        return;
                    }
                }
            }
            (self.on_event)(Event::CacheExported {
                repository,
                records: written,
            });
        }
    }
}
