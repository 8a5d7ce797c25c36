// An Express app behind the serverless-http adapter, as such apps are deployed on
// Lambda: the adapter turns the event (payload 1.0 or 2.0) into a request for the app
// and the app's response into the answer.
"use strict";

const express = require("express");
const serverless = require("serverless-http");

// Mounted twice: at /api for the payload 2.0 route, at /v1/api for the 1.0 one.
const api = express.Router();
api.get("/items/:id", (req, res) => {
  res.set("x-item", req.params.id);
  res.cookie("seen", req.params.id);
  res.json({ id: req.params.id, q: req.query.q, ua: req.get("user-agent") });
});

api.post("/items", (req, res) => {
  res.status(201).json({ created: req.body });
});

api.get("/bytes", (req, res) => {
  res.type("application/octet-stream").send(Buffer.from([0, 159, 146, 150, 255]));
});

api.get("/broken", () => {
  throw new Error("the route broke");
});

const app = express();
app.use(express.json());
app.use(["/api", "/v1/api"], api);

exports.handler = serverless(app, { binary: ["application/octet-stream"] });
