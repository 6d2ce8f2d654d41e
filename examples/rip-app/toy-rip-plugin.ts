// A TOY Bun plugin for `.rip` files, for the example and the tests only:
// it is NOT the real Rip compiler. It reads a `.rip` file as TypeScript with
// one extra keyword, `def name(args)`, which becomes `function name(args)`.
// rip-server loads a plugin like this one before the app with
// `--bun-preload=PATH` (or RIP_BUN_PRELOAD); a real Rip app names the real
// Rip compiler's Bun plugin there instead.
import { plugin } from "bun";

plugin({
  name: "toy-rip",
  setup(build) {
    // The optional query lets an import carry a cache-busting suffix.
    build.onLoad({ filter: /\.rip(\?.*)?$/ }, async (args) => {
      const source = await Bun.file(args.path.replace(/\?.*$/, "")).text();
      // `def` followed by a name and "(" is the one keyword this toy adds.
      const contents = source.replace(/\bdef\s+(?=[A-Za-z_$][\w$]*\s*\()/g, "function ");
      return { contents, loader: "ts" };
    });
  },
});
