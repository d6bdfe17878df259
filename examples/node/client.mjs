// A minimal APIMart Midjourney video client: submit, poll, download. Node 18+ (global fetch).
import { pathToFileURL } from "node:url";

const FINAL = new Set(["completed", "failed", "cancelled"]);

export class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}: ${body?.error?.message ?? JSON.stringify(body)}`);
    Object.assign(this, { status, body });
  }
}

async function call(baseUrl, token, path, init = {}) {
  const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...init.headers };
  const res = await fetch(baseUrl.replace(/\/+$/, "") + path, { ...init, headers });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

export async function submitVideo({ baseUrl, token, prompt, imageUrl, batchSize = 1, headers = {} }) {
  const body = { prompt, image_urls: [imageUrl], batch_size: batchSize };
  const answer = await call(baseUrl, token, "/v1/midjourney/generations/video", { method: "POST", body: JSON.stringify(body), headers });
  return answer.data[0].task_id;
}

export async function pollTask({ baseUrl, token, taskId, intervalMs = 3000, timeoutMs = 600_000 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await call(baseUrl, token, `/v1/tasks/${encodeURIComponent(taskId)}`);
    const task = answer?.data;
    if (typeof task?.status !== "string") throw new Error(`not the unified task envelope (use --task-dialect unified): ${JSON.stringify(answer)}`);
    if (FINAL.has(task.status)) return task;
    if (Date.now() > deadline) throw new Error(`task ${taskId} still ${task.status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// Every clip URL of a finished task; each item's url may be a string or a list of strings.
export const videoUrls = (task) => (task.result?.videos ?? []).flatMap((item) => [item.url].flat()).filter(Boolean);

// Result URLs are plain downloads (a CDN for the real API): no bearer token is sent there.
export async function downloadClip(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`download ${url}: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (new TextDecoder().decode(bytes.subarray(4, 8)) !== "ftyp") throw new Error(`${url} is not an MP4 (no ftyp box)`);
  return bytes;
}

export async function generate({ baseUrl, token, prompt, imageUrl, batchSize = 1, intervalMs, timeoutMs, headers }) {
  const taskId = await submitVideo({ baseUrl, token, prompt, imageUrl, batchSize, headers });
  const task = await pollTask({ baseUrl, token, taskId, intervalMs, timeoutMs });
  const urls = task.status === "completed" ? videoUrls(task) : [];
  const clips = await Promise.all(urls.map(downloadClip));
  return { taskId, task, urls, clips };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { parseArgs } = await import("node:util");
  const { values: o } = parseArgs({ options: {
    "base-url": { type: "string", default: "http://127.0.0.1:8000" }, token: { type: "string", default: "dev" },
    prompt: { type: "string", default: "the cat slowly turns its head" }, image: { type: "string", default: "https://example.com/cat.png" },
    batch: { type: "string", default: "1" }, interval: { type: "string", default: "3000" } } });
  try {
    const { taskId, task, urls, clips } = await generate({ baseUrl: o["base-url"], token: o.token, prompt: o.prompt,
      imageUrl: o.image, batchSize: Number(o.batch), intervalMs: Number(o.interval) });
    console.log(`${taskId}: ${task.status}${task.error ? ` (${task.error.message})` : ""}`);
    urls.forEach((url, i) => console.log(`  ${url}  ${clips[i].length} bytes`));
    process.exitCode = task.status === "completed" ? 0 : 1;
  } catch (err) {
    console.error(`error: ${err.message}${err.cause ? ` (${err.cause.message ?? err.cause})` : ""}`);
    process.exitCode = 2;
  }
}
