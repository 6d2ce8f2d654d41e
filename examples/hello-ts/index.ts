// The smallest rip-server TypeScript app: the default export is a function
// from a Request to a Response, a string (text/plain) or any other value (JSON).
import { greeting } from "./greeting.ts";

export default function app(req: Request): Response | string | object {
  const url = new URL(req.url);
  switch (url.pathname) {
    case "/":
      return greeting("world") + "\n";
    case "/ping":
      return "pong";
    case "/json":
      return { message: greeting("JSON"), pid: process.pid, worker: process.env.RIP_WORKER_ID };
    default:
      return new Response("not found\n", { status: 404 });
  }
}
