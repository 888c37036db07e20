// Node-RED settings for the benchmark (bench/install.py starts Node-RED with
// `node red.js --settings bench/nodered/settings.js --userDir <work dir>`).
//
// The harness writes a JSON file (path in BENCH_NODERED_CONFIG) with the webhook secret,
// the simulators' URLs and API keys, the DevHelm status page and the id mapping
// (InboxOps ticket id -> hookstream issue, DevHelm incident, incident.io follow-up, title),
// as bench/baseline.py gets them. The flow's function node reads them, and Node's
// `crypto`, from the global context.
const fs = require("fs");
const crypto = require("crypto");

const bench = JSON.parse(fs.readFileSync(process.env.BENCH_NODERED_CONFIG, "utf8"));
bench.key = Buffer.from(bench.secret.replace(/^whsec_/, ""), "base64");

module.exports = {
  uiHost: "127.0.0.1",
  uiPort: Number(process.env.BENCH_NODERED_PORT || 1880),
  flowFile: "flows.json",
  // no editor and no admin API: only the flow's own HTTP endpoints are served
  httpAdminRoot: false,
  credentialSecret: false,
  functionGlobalContext: { crypto, bench },
  logging: { console: { level: "info", metrics: false, audit: false } },
  diagnostics: { enabled: false },
  telemetry: { enabled: false },
};
