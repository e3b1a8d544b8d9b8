//! The HLS discontinuity numbering survives a master restart without a dump and without slaves:
//! the master keeps its epoch in the cluster's store and continues after it.

use std::time::Duration;

use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::cluster::Services;
use streammachine_e2e::eventually;
use streammachine_e2e::server::Server;

const T: Duration = Duration::from_secs(60);

/// (`EXT-X-DISCONTINUITY-SEQUENCE`, the discontinuity number of the newest segment).
fn numbering(playlist: &str) -> Option<(u64, u64)> {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:"))?
        .trim()
        .parse()
        .ok()?;
    let breaks = playlist
        .lines()
        .filter(|l| *l == "#EXT-X-DISCONTINUITY")
        .count() as u64;
    Some((first, first + breaks))
}

async fn push(server: &Server, seed: u32) {
    let file = fixture(Format::Mp3, 20, seed);
    let encoder = Encoder::push(
        &file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Fast,
        false,
    );
    assert!(encoder.wait(T).await.success());
    server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
}

/// The playlist once it lists at least one segment.
async fn playlist(server: &Server) -> (String, (u64, u64)) {
    eventually("an HLS playlist with segments", T, || async {
        let r = server.get("/live.m3u8").await;
        if !r.status().is_success() {
            return None;
        }
        let text = r.text().await.ok()?;
        let n = numbering(&text)?;
        text.contains("#EXTINF").then_some((text, n))
    })
    .await
}

#[tokio::test]
async fn discontinuity_sequence_never_goes_back_after_a_master_restart() {
    let services = Services::start().await;
    let mut master = services.master(&["--stream", "live"]).await;
    // Two sources one after the other: the second starts a new epoch.
    push(&master, 71).await;
    push(&master, 72).await;
    let (before, (_, newest_before)) = playlist(&master).await;
    assert!(
        newest_before >= 1,
        "no discontinuity after a reconnect:\n{before}"
    );

    // No dump directory and no slaves: nothing but the store remembers the numbering.
    master.kill();
    let master = services.master(&["--stream", "live"]).await;
    push(&master, 73).await;
    let (after, (first_after, _)) = playlist(&master).await;
    assert!(
        first_after > newest_before,
        "EXT-X-DISCONTINUITY-SEQUENCE went back from {newest_before} to {first_after}:\n\
         before the restart:\n{before}\nafter:\n{after}"
    );
}
