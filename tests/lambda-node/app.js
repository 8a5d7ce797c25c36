// Handlers for the Node end-to-end tests of `type = "lambda"` (tests/e2e/lambda_node.rs),
// run by the real aws-lambda-ric runtime interface client: async handlers, callback
// handlers, and what each kind of answer and failure turns into.
"use strict";

const { setTimeout: sleep } = require("node:timers/promises");

// The event and what the function sees of its context, as a 200 JSON body.
exports.echo = async (event, context) => {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) =>
      ["AWS_", "LAMBDA_", "TABLE", "WEIR_", "NODE_PATH"].some((p) => k.startsWith(p)),
    ),
  );
  const seen = {
    event,
    request_id: context.awsRequestId,
    arn: context.invokedFunctionArn,
    function: context.functionName,
    remaining_ms: context.getRemainingTimeInMillis(),
    trace: process.env._X_AMZN_TRACE_ID,
    env,
    pid: process.pid,
  };
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(seen),
  };
};

// A bare string from an async handler: a 200 whose body is the string.
exports.hello = async () => "hello";

// A JSON object without statusCode, through the callback: the body as it is.
exports.plain = (event, context, callback) => {
  callback(null, { message: "hi", pid: process.pid });
};

// Status, headers, cookies and body.
exports.cookies = async () => ({
  statusCode: 201,
  headers: { "x-a": "1", "content-type": "text/plain" },
  cookies: ["a=1; Path=/", "b=2"],
  body: "made",
});

// 1.0's multiValueHeaders: one header line each.
exports.multi = async () => ({
  statusCode: 200,
  multiValueHeaders: { "x-b": ["1", "2"], "set-cookie": ["c=3", "d=4"] },
  body: "multi",
});

// Sends the request body back reversed, base64 in both directions.
exports.binary = async (event) => {
  const body = event.isBase64Encoded
    ? Buffer.from(event.body, "base64")
    : Buffer.from(event.body || "", "utf8");
  return {
    statusCode: 200,
    headers: { "content-type": "application/octet-stream" },
    body: Buffer.from(body).reverse().toString("base64"),
    isBase64Encoded: true,
  };
};

// An exception thrown by an async handler: the runtime reports it to
// /invocation/{id}/error.
exports.fail = async () => {
  throw new TypeError("boom");
};

// An error handed to the callback.
exports.failCallback = (event, context, callback) => {
  callback(new RangeError("called back"));
};

// An exception thrown outside the handler's call (from a timer): the runtime reports
// it as the invocation's error and exits.
exports.uncaught = () => {
  setTimeout(() => {
    throw new Error("thrown later");
  }, 10);
};

// A rejected promise whose reason is no Error.
exports.reject = () => Promise.reject("just a string");

// Waits `?s=` seconds (default 5).
exports.slow = async (event) => {
  const params = event.queryStringParameters || {};
  const s = params.s || "5";
  await sleep(parseFloat(s) * 1000);
  return { slept: s, pid: process.pid };
};

// The process exits in the middle of the invocation.
exports.crash = () => {
  process.exit(3);
};

// A statusCode that is no status.
exports.malformed = async () => ({ statusCode: "teapot" });

// Output to the log: console.log goes through the runtime's own formatting.
exports.shout = async () => {
  console.log("from the node handler");
  console.error("after the node line");
  return "printed";
};
