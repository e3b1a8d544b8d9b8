// Plays HLS URLs in Debian's headless Chromium with hls.js and reports, as one JSON line on
// stdout, how far playback got, hls.js errors and the ID3 titles the page saw.
//
//   node play.mjs '{"urls": ["http://127.0.0.1:8000/live.m3u8"], "seconds": 20, "screenshots": "dir"}'
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
  const src = new URLSearchParams(location.search).get('src');
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
  for (const [i, url] of (config.urls ?? []).entries()) {
    const tab = await browser.newPage();
    const console_errors = [];
    tab.on('pageerror', e => console_errors.push(String(e)));
    await tab.goto(`${origin}/?src=${encodeURIComponent(url)}`);
    const samples = [];
    const t0 = Date.now();
    while (Date.now() - t0 < seconds * 1000) {
      await tab.waitForTimeout(1000);
      samples.push(await tab.evaluate(() => document.getElementById('audio').currentTime));
    }
    const report = await tab.evaluate(() => window.report);
    if (config.screenshots) {
      fs.mkdirSync(config.screenshots, { recursive: true });
      await tab.screenshot({ path: path.join(config.screenshots, `hls-${i}.png`) });
    }
    results.push({ url, samples, pageErrors: console_errors, ...report });
    await tab.close();
  }
} finally {
  await browser.close();
  server.close();
}
process.stdout.write(JSON.stringify({ results }) + '\n');
