// Plays HLS URLs in Debian's headless Chromium with hls.js and reports, as one JSON line on
// stdout, how far playback got, hls.js errors and the ID3 titles the page saw.
//
//   node play.mjs '{"urls": ["http://127.0.0.1:8000/live.m3u8"], "seconds": 20, "screenshots": "dir"}'
//
// A URL may be `{"url": ..., "seek": S}`: once playing, seek to S seconds after the start of the
// seekable range (a listener rewinding). `"name"` prefixes the screenshots (default `hls`).
//
// The page and hls.js are served from a small HTTP server on loopback started here; the stream
// server answers with CORS headers.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const config = JSON.parse(process.argv[2] ?? '{}');
const seconds = config.seconds ?? 20;
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>StreamMachine HLS</title>
<style>body{font:16px sans-serif;margin:2em} #state{white-space:pre}</style></head>
<body><h1>StreamMachine HLS test</h1><audio id="audio" controls></audio><div id="state"></div>
<script src="/hls.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const src = params.get('src');
  const seek = params.has('seek') ? Number(params.get('seek')) : null;
  const audio = document.getElementById('audio');
  const report = window.report = { fatal: [], errors: [], titles: [], levels: 0, started: false };
  const show = () => document.getElementById('state').textContent =
    src + '\\ncurrentTime ' + audio.currentTime.toFixed(2) + '\\ntitles ' + report.titles.join(' | ') +
    '\\nerrors ' + report.errors.join(', ');
  setInterval(show, 250);
  const hls = new Hls({ enableID3MetadataCues: true });
  hls.on(Hls.Events.ERROR, (_, d) => {
    (d.fatal ? report.fatal : report.errors).push(d.type + ':' + d.details);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
    report.levels = d.levels.length;
    audio.play().then(() => { report.started = true; }, e => report.fatal.push('play:' + e));
  });
  // Seek once playback has begun; what the seekable range was then goes into the report.
  report.seek = null;
  window.edge = () => audio.seekable.length ? audio.seekable.end(audio.seekable.length - 1) : 0;
  if (seek !== null) {
    audio.addEventListener('timeupdate', () => {
      if (report.seek || audio.seekable.length === 0 || audio.currentTime <= 0) return;
      const start = audio.seekable.start(0);
      report.seek = { from: audio.currentTime, to: start + seek, start, end: window.edge() };
      audio.currentTime = start + seek;
    });
  }
  report.id3 = 0;
  hls.on(Hls.Events.FRAG_PARSING_METADATA, (_, d) => { report.id3 += d.samples.length; });
  audio.textTracks.addEventListener('addtrack', e => {
    const track = e.track;
    track.mode = 'hidden';
    track.addEventListener('cuechange', () => {
      for (const cue of track.activeCues ?? []) {
        const v = cue.value;
        if (v && v.key === 'TIT2' && report.titles[report.titles.length - 1] !== v.data) {
          report.titles.push(v.data);
        }
      }
    });
  });
  hls.loadSource(src);
  hls.attachMedia(audio);
</script></body></html>`;

const hlsjs = fs.readFileSync(path.join(here, 'node_modules/hls.js/dist/hls.min.js'));
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/hls.js')) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(hlsjs);
  } else {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page);
  }
});
await new Promise(ok => server.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required', '--mute-audio',
  ],
});
const results = [];
try {
  for (const [i, entry] of (config.urls ?? []).entries()) {
    const { url, seek } = typeof entry === 'string' ? { url: entry } : entry;
    const tab = await browser.newPage();
    const console_errors = [];
    tab.on('pageerror', e => console_errors.push(String(e)));
    const query = `src=${encodeURIComponent(url)}` + (seek === undefined ? '' : `&seek=${seek}`);
    await tab.goto(`${origin}/?${query}`);
    // currentTime each second, and the live edge (end of the seekable range) at that moment.
    const samples = [];
    const edges = [];
    const t0 = Date.now();
    while (Date.now() - t0 < seconds * 1000) {
      await tab.waitForTimeout(1000);
      const [t, edge] = await tab.evaluate(
        () => [document.getElementById('audio').currentTime, window.edge()]);
      samples.push(t);
      edges.push(edge);
    }
    const report = await tab.evaluate(() => window.report);
    if (config.screenshots) {
      fs.mkdirSync(config.screenshots, { recursive: true });
      const name = config.name ?? 'hls';
      await tab.screenshot({ path: path.join(config.screenshots, `${name}-${i}.png`) });
    }
    results.push({ url, samples, edges, pageErrors: console_errors, ...report });
    await tab.close();
  }
} finally {
  await browser.close();
  server.close();
}
process.stdout.write(JSON.stringify({ results }) + '\n');
