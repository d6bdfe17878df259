// node --test examples/node/client.test.mjs, against a running fake:
//   MOCKSERVER_URL=http://127.0.0.1:8000 (started with --task-seconds 0 --task-dialect unified)
import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, generate, submitVideo, videoUrls } from "./client.mjs";

const baseUrl = process.env.MOCKSERVER_URL;
const server = { skip: baseUrl ? false : "MOCKSERVER_URL is not set" };
const job = { baseUrl, token: "node-example", prompt: "the cat slowly turns its head", imageUrl: "https://example.com/cat.png", intervalMs: 50, timeoutMs: 20_000 };

for (const batchSize of [1, 2]) {
  test(`batch_size ${batchSize} gives ${batchSize} downloadable clip(s)`, server, async () => {
    const { taskId, task, urls, clips } = await generate({ ...job, batchSize });
    assert.match(taskId, /^task_[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(task.id, taskId);
    assert.equal(task.status, "completed");
    assert.equal(task.progress, 100);
    assert.equal(urls.length, batchSize);
    assert.equal(new Set(urls).size, batchSize);
    assert.equal(clips.length, batchSize);
    for (const clip of clips) assert.ok(clip.length > 1000, `clip of ${clip.length} bytes`);
  });
}

test("a video without a first frame is refused with 400 on image_urls", server, async () => {
  const res = await fetch(`${baseUrl}/v1/midjourney/generations/video`, {
    method: "POST",
    headers: { Authorization: "Bearer node-example", "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: "x" }),
  });
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.error.param, "image_urls");
  assert.equal(body.error.type, "invalid_request_error");
});

test("the client raises ApiError on a refusal", server, async () => {
  await assert.rejects(submitVideo({ ...job, imageUrl: "not-a-url" }), (err) => err instanceof ApiError && err.status === 400);
});

test("X-Mock-Scenario: moderation ends the task failed, with no clips", server, async () => {
  const { task, urls, clips } = await generate({ ...job, headers: { "X-Mock-Scenario": "moderation" } });
  assert.equal(task.status, "failed");
  assert.ok(task.error?.message, "a failed task carries error.message");
  assert.deepEqual(urls, []);
  assert.deepEqual(clips, []);
});

test("videoUrls reads url as a list or as a string", () => {
  const task = { result: { videos: [{ url: ["http://h/0.mp4"] }, { url: "http://h/1.mp4" }, { url: ["http://h/2.mp4", "http://h/3.mp4"] }] } };
  assert.deepEqual(videoUrls(task), ["http://h/0.mp4", "http://h/1.mp4", "http://h/2.mp4", "http://h/3.mp4"]);
  assert.deepEqual(videoUrls({ status: "failed" }), []);
});
