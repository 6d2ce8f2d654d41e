// Imported by index.ts: edit this file while the server runs with
// --hot-reload=module and the next request answers with the new text.
export function greeting(name: string): string {
  return `Hello, ${name}, from a Bun worker!`;
}
