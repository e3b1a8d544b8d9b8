//! `GET /api/events` on the admin port: the event bus as Server-Sent Events, filtered by
//! `?type=` (comma-separated; exact or `source.*`) and `?stream=`, resumed after `Last-Event-ID`
//! from the bounded history. A client that cannot keep up is dropped, never waited for: the bus
//! does not slow down for it, and once it has missed events its stream ends (a reconnect with
//! `Last-Event-ID` picks up what is still held).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{Event, Filter};
use crate::app::App;

/// The filter a query asks for.
pub fn parse_filter(query: &str) -> Result<Filter, String> {
    let mut filter = Filter::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let list = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from);
        match k.as_ref() {
            "type" => filter.types.extend(list),
            "stream" => filter.streams.extend(list),
            _ => {}
        }
    }
    filter.validate()?;
    Ok(filter)
}

fn sse_event(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.id.clone())
        .event(event.kind_name())
        .json_data(event)
        .unwrap_or_default()
}

pub async fn events(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let filter = match parse_filter(&query.unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (missed, rx) = app.events.resume(last_id.as_deref());
    let metrics = app.metrics.events.clone();
    metrics.sse_clients.inc();
    let stream = stream(filter, missed, rx, metrics);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn stream(
    filter: Filter,
    missed: Vec<Arc<Event>>,
    rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    metrics: super::EventMetrics,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct Client {
        metrics: super::EventMetrics,
    }
    impl Drop for Client {
        fn drop(&mut self) {
            self.metrics.sse_clients.dec();
        }
    }
    let sent: HashSet<String> = missed.iter().map(|e| e.id.clone()).collect();
    let missed: Vec<SseEvent> = missed
        .iter()
        .filter(|e| filter.matches(e))
        .map(|e| sse_event(e))
        .collect();
    let client = Client { metrics };
    let live = futures_util::stream::unfold(
        (rx, filter, sent, client),
        |(mut rx, filter, mut sent, client)| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        // Events both in the history and on the channel go out once.
                        if !sent.is_empty() && sent.remove(&e.id) {
                            continue;
                        }
                        if filter.matches(&e) {
                            return Some((Ok(sse_event(&e)), (rx, filter, sent, client)));
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        client.metrics.sse_dropped.inc();
                        return None;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    futures_util::StreamExt::chain(futures_util::stream::iter(missed.into_iter().map(Ok)), live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_filters() {
        let f =
            parse_filter("type=source.silence.*,source.promoted&stream=live&stream=news").unwrap();
        assert_eq!(f.types, ["source.silence.*", "source.promoted"]);
        assert_eq!(f.streams, ["live", "news"]);
        assert!(parse_filter("").unwrap().types.is_empty());
        assert!(parse_filter("type=bogus").unwrap_err().contains("`bogus`"));
    }
}
