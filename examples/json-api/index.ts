// An async JSON API: an in-memory todo list.
//   GET  /todos        → [{id, title, done}]
//   POST /todos        {"title": "..."} → 201 {id, title, done}
//   GET  /todos/:id    → the todo, or 404
//   POST /todos/:id/done → the todo marked done, or 404
// Each worker process keeps its own list (workers share nothing), so with
// w:2 two requests may see two different lists: a real app keeps its state
// in a database.

type Todo = { id: number; title: string; done: boolean };

const todos = new Map<number, Todo>();
let nextId = 1;

const json = (value: unknown, status = 200) => Response.json(value, { status });
const notFound = (what: string) => json({ error: `no such ${what}` }, 404);

/** Stands in for a database round trip. */
async function store<T>(value: T): Promise<T> {
  await Bun.sleep(1);
  return value;
}

async function readTitle(req: Request): Promise<string | Response> {
  let body: unknown;
  try {
    body = await req.json();
  } catch {
    return json({ error: "the body must be JSON" }, 400);
  }
  const title = (body as { title?: unknown } | null)?.title;
  if (typeof title !== "string" || title.trim() === "") {
    return json({ error: 'expected {"title": "a non-empty string"}' }, 400);
  }
  return title.trim();
}

export default {
  async fetch(req: Request): Promise<Response> {
    const { pathname } = new URL(req.url);
    const parts = pathname.split("/").filter(Boolean);
    if (parts[0] !== "todos") return notFound("route");

    if (parts.length === 1 && req.method === "GET") return json(await store([...todos.values()]));
    if (parts.length === 1 && req.method === "POST") {
      const title = await readTitle(req);
      if (title instanceof Response) return title;
      const todo = await store({ id: nextId++, title, done: false });
      todos.set(todo.id, todo);
      return json(todo, 201);
    }

    const todo = todos.get(Number(parts[1]));
    if (parts.length === 2 && req.method === "GET") return todo ? json(todo) : notFound("todo");
    if (parts.length === 3 && parts[2] === "done" && req.method === "POST") {
      if (!todo) return notFound("todo");
      todo.done = true;
      return json(await store(todo));
    }
    return notFound("route");
  },
};
