//! The Stream controller.
//!
//! Each reconcile runs the pipeline `validate -> dereference -> build -> apply -> status`:
//! validate and build are pure (`validate`, `resources`), the other steps talk to Kubernetes,
//! Redis or the master. Every write is a server-side apply with one field manager and `force`,
//! so a reconcile is idempotent and repairs drift in any child. The Redis entry is the only
//! state outside Kubernetes, so it is the only thing behind a finalizer; children go with the
//! Stream through their owner references.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, instrument, warn};

use crate::config::{Sensitive, StreamSecrets, check_webhook_secret};
use crate::crd::{SecretKeyRef, Stream};
use crate::master::MasterApi;
use crate::metrics::Metrics;
use crate::resources::{self, BuildError, ChildNames, Desired, MANAGED_BY, WorkerSettings};
use crate::status::{self, Observed, SlaveCounts, reasons};
use crate::store::{ConfigStore, PutOutcome, StoreError};
use crate::validate::{InvalidSpec, ValidSpec, validate};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "streammachine-operator.streammachine.io";
/// Finalizer guarding the stream's Redis entry.
pub const REDIS_FINALIZER: &str = "streams.streammachine.io/redis";
/// Retry delay for errors that need a change elsewhere (a Secret created, RBAC fixed).
pub const BLOCKED_RETRY: Duration = Duration::from_secs(60);

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be acted on.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[source] InvalidSpec),
    /// The source password Secret or key is missing or unreadable.
    #[error("source password unavailable: {0}")]
    SourceSecret(String),
    /// A webhook's signing-secret Secret or key is missing, unreadable or not a valid secret.
    #[error("webhook secret unavailable: {0}")]
    WebhookSecret(String),
    /// Redis failed or the key belongs to another Stream.
    #[error("config store: {0}")]
    Store(#[source] StoreError),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// The Stream lacks metadata its children need.
    #[error("building children: {0}")]
    Build(#[source] BuildError),
    /// The config document could not be serialized.
    #[error("serializing the stream config: {0}")]
    Serialization(#[source] serde_json::Error),
    /// The stored object does not deserialize as a Stream (e.g. stored under an older schema).
    #[error("malformed Stream: {0}")]
    Malformed(String),
    /// Adding or removing the finalizer failed, or a step inside it did. Boxed because
    /// `finalizer::Error` is generic over this very type.
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

/// How an error is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Only a spec change helps: wait for one (no requeue, no hot loop).
    InvalidSpec,
    /// Needs a change outside the Stream: retry slowly.
    Blocked,
    /// Network, conflicts, overload: retry soon, backing off.
    Transient,
}

impl Error {
    /// How to retry after this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidSpec(_) | Error::Malformed(_) => ErrorClass::InvalidSpec,
            Error::SourceSecret(_)
            | Error::WebhookSecret(_)
            | Error::Build(_)
            | Error::Serialization(_) => ErrorClass::Blocked,
            Error::Store(StoreError::KeyInUse { .. }) => ErrorClass::Blocked,
            Error::Store(StoreError::Redis(_)) => ErrorClass::Transient,
            Error::Kube(e) => kube_class(e),
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.class(),
                finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => {
                    kube_class(e)
                }
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => {
                    ErrorClass::Blocked
                }
            },
        }
    }

    /// Low-cardinality label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::SourceSecret(_) => "source_secret",
            Error::WebhookSecret(_) => "webhook_secret",
            Error::Store(StoreError::KeyInUse { .. }) => "key_in_use",
            Error::Store(StoreError::Redis(_)) => "redis",
            Error::Kube(_) => "kube",
            Error::Build(_) => "build",
            Error::Serialization(_) => "serialization",
            Error::Malformed(_) => "malformed",
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
        }
    }
}

fn kube_class(error: &kube::Error) -> ErrorClass {
    match error {
        // Rejected requests (bad request, forbidden, invalid): retrying the same call soon
        // cannot help; RBAC or an admission webhook must change.
        kube::Error::Api(status) if matches!(status.code, 400 | 401 | 403 | 422) => {
            ErrorClass::Blocked
        }
        // 404 (gone meanwhile), 409 (conflict), 429, 5xx and every network error.
        _ => ErrorClass::Transient,
    }
}

/// First retry delay of a transient error; doubles per consecutive failure.
const BACKOFF_START: Duration = Duration::from_secs(2);
/// Longest retry delay of a transient error (before jitter).
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The backoff a Stream's retries follow: exponential from [`BACKOFF_START`] to [`BACKOFF_MAX`],
/// with jitter of up to the delay again (the worker's retry loops use the same crate and shape),
/// so Streams that failed together (an API server restart) are not retried in lockstep.
fn backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(BACKOFF_START)
        .with_max_delay(BACKOFF_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Consecutive transient failures per Stream, reset by a successful reconcile.
#[derive(Default)]
pub struct Backoff {
    delays: Mutex<HashMap<String, backon::ExponentialBackoff>>,
}

impl Backoff {
    /// Records one more failure of `id` and returns the delay before the next try.
    pub fn next_delay(&self, id: &str) -> Duration {
        let mut delays = self.delays.lock().unwrap_or_else(PoisonError::into_inner);
        delays
            .entry(id.to_owned())
            .or_insert_with(backoff)
            .next()
            .unwrap_or(BACKOFF_MAX)
    }

    /// Forgets the failures of `id`.
    pub fn reset(&self, id: &str) {
        self.delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// The master's config store.
    pub store: Arc<dyn ConfigStore>,
    /// The master's admin API.
    pub master: Arc<dyn MasterApi>,
    /// How slave pods are built.
    pub settings: WorkerSettings,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// How often a healthy Stream is reconciled to refresh its status figures.
    pub status_refresh: Duration,
    /// Retry delays of transient errors.
    pub backoff: Backoff,
}

/// `namespace/name` of a Stream: its identity in logs, backoff and the Redis owner table.
fn stream_id(stream: &impl Resource) -> String {
    format!(
        "{}/{}",
        stream.namespace().unwrap_or_default(),
        stream.name_any()
    )
}

/// What the controller watches: a Stream, or the error and metadata of an object that does not
/// deserialize as one. Without the guard, one such object would fail every list of the watcher
/// and stop the controller for all Streams.
pub type WatchedStream = DeserializeGuard<Stream>;

/// Reconciles one Stream.
#[instrument(skip(object, ctx), fields(stream = %stream_id(object.as_ref())))]
pub async fn reconcile(object: Arc<WatchedStream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile.start();
    match &object.0 {
        Ok(stream) => reconcile_stream(Arc::new(stream.clone()), &ctx).await,
        Err(invalid) => {
            let event = Event {
                type_: EventType::Warning,
                reason: reasons::MALFORMED.to_owned(),
                note: Some(invalid.error.clone()),
                action: "Reconcile".to_owned(),
                secondary: None,
            };
            if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
                warn!(%error, "Could not publish an event.");
            }
            Err(Error::Malformed(invalid.error.clone()))
        }
    }
}

async fn reconcile_stream(stream: Arc<Stream>, ctx: &Context) -> Result<Action, Error> {
    let id = stream_id(stream.as_ref());
    let api: Api<Stream> =
        Api::namespaced(ctx.client.clone(), &stream.namespace().unwrap_or_default());
    let action = finalizer(&api, REDIS_FINALIZER, stream, |event| async {
        match event {
            finalizer::Event::Apply(stream) => apply(&stream, ctx).await,
            finalizer::Event::Cleanup(stream) => cleanup(&stream, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.backoff.reset(&id);
    Ok(action)
}

/// Decides the retry after a failed reconcile.
pub fn error_policy(object: Arc<WatchedStream>, error: &Error, ctx: Arc<Context>) -> Action {
    let id = stream_id(object.as_ref());
    ctx.metrics.reconcile.failed(error.metric_label());
    match error.class() {
        ErrorClass::InvalidSpec => {
            warn!(stream = %id, %error, "Stream spec is invalid; waiting for a change.");
            Action::await_change()
        }
        ErrorClass::Blocked => {
            warn!(stream = %id, %error, retry_in = ?BLOCKED_RETRY, "Reconcile blocked.");
            Action::requeue(BLOCKED_RETRY)
        }
        ErrorClass::Transient => {
            let delay = ctx.backoff.next_delay(&id);
            warn!(stream = %id, %error, retry_in = ?delay, "Reconcile failed; retrying.");
            Action::requeue(delay)
        }
    }
}

async fn apply(stream: &Stream, ctx: &Context) -> Result<Action, Error> {
    // Validate (no client required).
    let valid = match validate(stream) {
        Ok(valid) => valid,
        Err(invalid) => {
            let observed = Observed::InvalidSpec(invalid.to_string());
            return fail(stream, ctx, observed, Error::InvalidSpec(invalid)).await;
        }
    };

    // Dereference (client required): the encoder password and the webhooks' signing secrets.
    let secrets = match stream_secrets(stream, ctx).await {
        Ok(secrets) => secrets,
        Err(Error::SourceSecret(message)) => {
            let observed = Observed::Blocked {
                reason: reasons::SOURCE_SECRET_UNAVAILABLE,
                message: message.clone(),
            };
            return fail(stream, ctx, observed, Error::SourceSecret(message)).await;
        }
        Err(Error::WebhookSecret(message)) => {
            let observed = Observed::Blocked {
                reason: reasons::WEBHOOK_SECRET_UNAVAILABLE,
                message: message.clone(),
            };
            return fail(stream, ctx, observed, Error::WebhookSecret(message)).await;
        }
        Err(e) => return Err(e),
    };

    // Build (no client required).
    let desired =
        resources::build(stream, &valid, &ctx.settings, &secrets).map_err(Error::Build)?;

    // Apply (client required).
    let slaves = match apply_desired(stream, &valid, desired, ctx).await {
        Ok(slaves) => slaves,
        Err(Error::Store(conflict @ StoreError::KeyInUse { .. })) => {
            let observed = Observed::Blocked {
                reason: reasons::KEY_IN_USE,
                message: conflict.to_string(),
            };
            return fail(stream, ctx, observed, Error::Store(conflict)).await;
        }
        Err(e) => return Err(e),
    };

    // Status, last: it describes what was applied.
    let master = ctx.master.stream_report(&valid.key).await;
    report(stream, ctx, &Observed::Running { slaves, master }).await?;
    Ok(Action::requeue(ctx.status_refresh))
}

/// Writes the status for a failure, then returns the error for `error_policy`.
async fn fail(
    stream: &Stream,
    ctx: &Context,
    observed: Observed,
    error: Error,
) -> Result<Action, Error> {
    report(stream, ctx, &observed).await?;
    Err(error)
}

async fn cleanup(stream: &Stream, ctx: &Context) -> Result<Action, Error> {
    // The key in Redis is the one the last successful apply recorded; a Stream that never got
    // that far may still have written its spec key.
    let key = stream
        .status
        .as_ref()
        .and_then(|s| s.key.clone())
        .unwrap_or_else(|| stream.key().to_owned());
    ctx.store
        .delete(&stream_id(stream), &key)
        .await
        .map_err(Error::Store)?;
    info!(%key, "Removed the stream config from the master's store.");
    Ok(Action::await_change())
}

/// Reads every Secret value the Stream's config carries. Re-read on every reconcile (also the
/// periodic status refresh), so a changed Secret reaches the master within `status_refresh`.
async fn stream_secrets(stream: &Stream, ctx: &Context) -> Result<StreamSecrets, Error> {
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &stream.namespace().unwrap_or_default());
    let reference = &stream.spec.source.password_secret_ref;
    let source_password = match secret_value(&secrets, reference).await? {
        Ok(password) => password,
        Err(problem) => return Err(Error::SourceSecret(problem)),
    };
    if source_password.expose().is_empty() {
        return Err(Error::SourceSecret(format!(
            "key {:?} of Secret {:?} must be a non-empty UTF-8 password",
            reference.key, reference.name
        )));
    }
    let mut webhook_secrets = Vec::with_capacity(stream.spec.webhooks.len());
    for (i, hook) in stream.spec.webhooks.iter().enumerate() {
        let Some(reference) = &hook.secret_key_ref else {
            webhook_secrets.push(None);
            continue;
        };
        let field = format!("spec.webhooks[{i}].secretKeyRef");
        let secret = secret_value(&secrets, reference)
            .await?
            .map_err(|problem| Error::WebhookSecret(format!("{field}: {problem}")))?;
        check_webhook_secret(secret.expose()).map_err(|problem| {
            Error::WebhookSecret(format!(
                "{field}: key {:?} of Secret {:?}: {problem}",
                reference.key, reference.name
            ))
        })?;
        webhook_secrets.push(Some(secret));
    }
    Ok(StreamSecrets {
        source_password,
        webhook_secrets,
    })
}

/// The UTF-8 value at `reference`, or why there is none (a message naming the Secret and key,
/// never the value). API failures other than a missing Secret are errors of their own.
async fn secret_value(
    secrets: &Api<Secret>,
    reference: &SecretKeyRef,
) -> Result<Result<Sensitive, String>, Error> {
    let Some(secret) = secrets
        .get_opt(&reference.name)
        .await
        .map_err(Error::Kube)?
    else {
        return Ok(Err(format!("Secret {:?} not found", reference.name)));
    };
    let Some(bytes) = secret
        .data
        .and_then(|mut data| data.remove(&reference.key))
        .map(|value| value.0)
    else {
        return Ok(Err(format!(
            "Secret {:?} has no key {:?}",
            reference.name, reference.key
        )));
    };
    Ok(String::from_utf8(bytes).map(Sensitive::new).map_err(|_| {
        format!(
            "key {:?} of Secret {:?} is not UTF-8",
            reference.key, reference.name
        )
    }))
}

/// Writes the config and applies every child; returns the slave pod counts.
async fn apply_desired(
    stream: &Stream,
    valid: &ValidSpec,
    desired: Desired,
    ctx: &Context,
) -> Result<SlaveCounts, Error> {
    let document = desired.config.to_document().map_err(Error::Serialization)?;
    let outcome = ctx
        .store
        .put(&stream_id(stream), &valid.key, &document)
        .await
        .map_err(Error::Store)?;
    if outcome == PutOutcome::Written {
        info!(key = %valid.key, "Wrote the stream config to the master's store.");
    }

    let namespace = stream.namespace().unwrap_or_default();
    let client = &ctx.client;
    server_side_apply(client, &namespace, &desired.secret).await?;
    server_side_apply(client, &namespace, &desired.service).await?;
    let deployment = server_side_apply(client, &namespace, &desired.deployment).await?;

    // Optional children can only become unwanted through a spec change, so they are pruned
    // only when the spec is newer than the last applied one, not on every periodic reconcile.
    let spec_changed =
        stream.metadata.generation != stream.status.as_ref().and_then(|s| s.observed_generation);
    let names = ChildNames::of(stream);
    apply_or_prune(
        client,
        &namespace,
        &names.slave,
        desired.autoscaler,
        spec_changed,
    )
    .await?;
    apply_or_prune(
        client,
        &namespace,
        &names.slave,
        desired.disruption_budget,
        spec_changed,
    )
    .await?;
    apply_or_prune(
        client,
        &namespace,
        &names.audio_ingress,
        desired.audio_ingress,
        spec_changed,
    )
    .await?;
    apply_or_prune(
        client,
        &namespace,
        &names.hls_ingress,
        desired.hls_ingress,
        spec_changed,
    )
    .await?;

    let status = deployment.status.unwrap_or_default();
    Ok(SlaveCounts {
        desired: deployment.spec.replicas.unwrap_or(1),
        current: status.replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
    })
}

async fn server_side_apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&object.name_any(), &params, &Patch::Apply(object))
        .await
        .map_err(Error::Kube)
}

async fn apply_or_prune<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    desired: Option<K>,
    prune: bool,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    match desired {
        Some(object) => server_side_apply(client, namespace, &object)
            .await
            .map(drop),
        None if prune => {
            let api: Api<K> = Api::namespaced(client.clone(), namespace);
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {
                    info!(kind = %K::kind(&()), %name, "Deleted a child the spec no longer asks for.");
                    Ok(())
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
                Err(e) => Err(Error::Kube(e)),
            }
        }
        None => Ok(()),
    }
}

/// Writes the status for `observed` when it changed, and publishes the events of its
/// transitions. Event failures are logged only: they must not fail the reconcile.
async fn report(stream: &Stream, ctx: &Context, observed: &Observed) -> Result<(), Error> {
    let old = stream.status.as_ref();
    let new = status::compute(
        old,
        stream.metadata.generation,
        stream.key(),
        observed,
        Timestamp::now(),
    );
    if old != Some(&new) {
        let api: Api<Stream> =
            Api::namespaced(ctx.client.clone(), &stream.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "apiVersion": Stream::api_version(&()),
            "kind": Stream::kind(&()),
            "status": new,
        });
        api.patch_status(
            &stream.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::Kube)?;
    }
    let reference = stream.object_ref(&());
    for note in status::transitions(old, &new) {
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason,
            note: Some(note.note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            warn!(%error, reason = %event.reason, "Could not publish an event.");
        }
    }
    Ok(())
}

/// Runs the controller until `shutdown` resolves, then lets running reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let streams: Api<WatchedStream> = scoped_api(&client, namespace.as_deref());
    let (reader, writer) = reflector::store();
    // Status-only updates must not trigger reconciles: the status holds live figures (listeners,
    // buffered seconds), so every status write would otherwise cause the next reconcile.
    // Spec changes bump the generation; finalizer edits and deletion marking are added
    // explicitly because they do not always.
    let deleting = |s: &WatchedStream| Some(u64::from(s.meta().deletion_timestamp.is_some()));
    let predicate = predicates::generation
        .combine(predicates::finalizers)
        .combine(deleting);
    let trigger = watcher(streams, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .predicate_filter(predicate, Default::default());

    // Children are watched only when they carry the operator's label, not cluster-wide.
    let children =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let ns = namespace.as_deref();
    Controller::for_stream(trigger, reader)
        .owns(scoped_api::<Deployment>(&client, ns), children.clone())
        .owns(scoped_api::<Service>(&client, ns), children.clone())
        .owns(
            scoped_api::<HorizontalPodAutoscaler>(&client, ns),
            children.clone(),
        )
        .owns(
            scoped_api::<PodDisruptionBudget>(&client, ns),
            children.clone(),
        )
        .owns(scoped_api::<Ingress>(&client, ns), children)
        // Creating a Stream's children fires one owned-object event per child; a short
        // debounce folds them into one reconcile.
        .with_config(
            controller::Config::default()
                .concurrency(4)
                .debounce(Duration::from_millis(500)),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(stream = %object, "Reconciled."),
                // Reconcile errors are logged by error_policy; these are queue/watch errors.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                // A trigger (e.g. a garbage-collected child) for a Stream already deleted.
                Err(controller::Error::ObjectNotFound(object)) => {
                    debug!(stream = %object, "Stream is gone.");
                }
                Err(error) => warn!(%error, "Controller error."),
            }
        })
        .await;
}

/// An Api over one namespace, or all of them.
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests;
