// Run once per context, before any user module. `host` holds the native functions of the pool
// thread; user code never sees it, only the globals installed here. Returns the internals the
// Rust side needs (error description, export analysis), also out of user code's reach.
// A module (compiled once to bytecode, see bytecode.rs) whose name no import can resolve to.
export default function bootstrap(host) {
  "use strict";
  const g = globalThis;
  const ObjectKeys = Object.keys;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ObjectPrototype = Object.prototype;
  const ObjectIs = Object.is;
  const ArrayIsArray = Array.isArray;
  const FunctionToString = Function.prototype.toString;
  const JSONStringify = JSON.stringify;
  const StringCtor = String;
  const RealDate = Date;
  const ReflectApply = Reflect.apply;

  function define(target, name, value) {
    Object.defineProperty(target, name, {
      value,
      writable: true,
      enumerable: false,
      configurable: true,
    });
  }

  // ---- Convex ----
  const hostAsyncSyscall = host.asyncSyscall;
  const PromiseThen = Promise.prototype.then;
  // A nested call (`1.0/runUdf`): the handler chose the export; invoke it in this context once
  // its module is imported, and report how it settled (`settle` returns the caller's result or
  // throws its error).
  function nestedCall(namespacePromise, name, kind, argsJson, settle) {
    // `settle` answers `undefined` when the handler wants the export run again (a nested
    // mutation whose commit conflicted).
    const again = (answer) => (answer === undefined ? attempt() : answer);
    function attempt() {
      const started = ReflectApply(PromiseThen, namespacePromise, [
        (namespace) => {
          if (exportKind(namespace, name) !== kind) {
            throw new Error(`"${StringCtor(name)}" is not a registered ${kind}`);
          }
          return invoke(namespace, name, kind, "", argsJson);
        },
      ]);
      return ReflectApply(PromiseThen, started, [
        (result) => again(settle(true, result, null, null)),
        (error) => {
          // A ConvexError crosses over as a syscall error with its data, as Convex passes it.
          const described = describeError(error);
          return again(
            settle(false, error, described.convex ? described.data : null, described.message),
          );
        },
      ]);
    }
    return attempt();
  }
  const Convex = Object.freeze({
    syscall: host.syscall,
    asyncSyscall(op, argsJson) {
      return hostAsyncSyscall(op, argsJson, nestedCall);
    },
    jsSyscall(op) {
      throw new Error(`Convex.jsSyscall("${StringCtor(op)}") is not supported`);
    },
  });
  Object.defineProperty(g, "Convex", {
    value: Convex,
    writable: false,
    enumerable: false,
    configurable: false,
  });

  // ---- console: formatted like object-inspect, the formatter Convex uses ----
  const MAX_DEPTH = 5;
  const MAX_STRING_CHARS = 32768;
  const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
  const LOW_NAMES = { 8: "b", 9: "t", 10: "n", 12: "f", 13: "r" };

  function escapeLow(c) {
    const n = c.charCodeAt(0);
    const name = LOW_NAMES[n];
    if (name) return "\\" + name;
    return "\\x" + (n < 16 ? "0" : "") + n.toString(16).toUpperCase();
  }

  function quote(s) {
    let tail = "";
    if (s.length > MAX_STRING_CHARS) {
      const more = s.length - MAX_STRING_CHARS;
      s = s.slice(0, MAX_STRING_CHARS);
      tail = `... ${more} more character${more > 1 ? "s" : ""}`;
    }
    return "'" + s.replace(/(['\\])/g, "\\$1").replace(/[\x00-\x1f]/g, escapeLow) + "'" + tail;
  }

  function symbolString(s) {
    return s.description === undefined ? "Symbol()" : `Symbol(${s.description})`;
  }

  function keyString(k) {
    if (typeof k === "symbol") return "[" + symbolString(k) + "]";
    return IDENTIFIER.test(k) ? k : quote(k);
  }

  function isClass(f) {
    try {
      return /^class[\s{]/.test(FunctionToString.call(f));
    } catch {
      return false;
    }
  }

  function ownEntries(v, skip, depth, seen) {
    const out = [];
    for (const k of ObjectKeys(v)) {
      if (skip && skip(k)) continue;
      out.push(keyString(k) + ": " + inspect(v[k], depth + 1, seen));
    }
    for (const s of Object.getOwnPropertySymbols(v)) {
      if (ObjectPrototype.propertyIsEnumerable.call(v, s)) {
        out.push(keyString(s) + ": " + inspect(v[s], depth + 1, seen));
      }
    }
    return out;
  }

  function braces(prefix, entries) {
    const head = prefix ? prefix + " " : "";
    return entries.length === 0 ? head + "{}" : head + "{ " + entries.join(", ") + " }";
  }

  function constructorName(v) {
    const proto = ObjectGetPrototypeOf(v);
    if (proto === null) return null;
    const ctor = proto.constructor;
    return typeof ctor === "function" && typeof ctor.name === "string" ? ctor.name : "";
  }

  function inspect(v, depth, seen) {
    switch (typeof v) {
      case "string":
        return quote(v);
      case "number":
        return ObjectIs(v, -0) ? "-0" : StringCtor(v);
      case "bigint":
        return StringCtor(v) + "n";
      case "boolean":
        return v ? "true" : "false";
      case "undefined":
        return "undefined";
      case "symbol":
        return symbolString(v);
    }
    if (v === null) return "null";
    if (seen.includes(v)) return "[Circular]";
    if (typeof v === "function") {
      const name = typeof v.name === "string" && v.name ? v.name : "";
      const base = isClass(v)
        ? `[class ${name || "(anonymous)"}]`
        : `[Function${name ? ": " + name : " (anonymous)"}]`;
      if (depth >= MAX_DEPTH) return base;
      seen.push(v);
      try {
        const entries = ownEntries(v, null, depth, seen);
        return entries.length === 0 ? base : braces(base, entries);
      } finally {
        seen.pop();
      }
    }
    if (depth >= MAX_DEPTH) return ArrayIsArray(v) ? "[Array]" : "[Object]";
    seen.push(v);
    try {
      return inspectObject(v, depth, seen);
    } finally {
      seen.pop();
    }
  }

  function inspectObject(v, depth, seen) {
    if (ArrayIsArray(v)) {
      if (v.length === 0 && ObjectKeys(v).length === 0) return "[]";
      const items = [];
      for (let i = 0; i < v.length; i++) {
        items.push(i in v ? inspect(v[i], depth + 1, seen) : "");
      }
      for (const k of ObjectKeys(v)) {
        if (!/^(0|[1-9]\d*)$/.test(k)) items.push(keyString(k) + ": " + inspect(v[k], depth + 1, seen));
      }
      return "[ " + items.join(", ") + " ]";
    }
    if (v instanceof Error) {
      const text = "[" + errorHeadline(v) + "]";
      const entries = ownEntries(v, (k) => k === "stack" || k === "message", depth, seen);
      return entries.length === 0 ? text : "{ " + text + " " + entries.join(", ") + " }";
    }
    if (v instanceof RealDate) {
      return isNaN(v.getTime()) ? "Invalid Date" : v.toISOString();
    }
    if (v instanceof RegExp) return StringCtor(v);
    if (v instanceof Map) {
      const parts = [];
      for (const [k, x] of v) parts.push(inspect(k, depth + 1, seen) + " => " + inspect(x, depth + 1, seen));
      return `Map (${v.size}) {${parts.join(", ")}}`;
    }
    if (v instanceof Set) {
      const parts = [];
      for (const x of v) parts.push(inspect(x, depth + 1, seen));
      return `Set (${v.size}) {${parts.join(", ")}}`;
    }
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const items = [];
      for (let i = 0; i < v.length; i++) items.push(inspect(v[i], depth + 1, seen));
      const name = constructorName(v) || "TypedArray";
      return items.length === 0 ? `${name}(0) []` : `${name}(${v.length}) [ ${items.join(", ")} ]`;
    }
    if (v instanceof ArrayBuffer) return `ArrayBuffer { byteLength: ${v.byteLength} }`;
    if (v instanceof Number || v instanceof String || v instanceof Boolean || v instanceof BigInt) {
      return "Object(" + inspect(v.valueOf(), depth + 1, seen) + ")";
    }
    const name = constructorName(v);
    const entries = ownEntries(v, null, depth, seen);
    if (name === null) return braces("[Object: null prototype]", entries);
    if (name === "Object" && ObjectGetPrototypeOf(v) === ObjectPrototype) return braces("", entries);
    return braces(name, entries);
  }

  function errorHeadline(e) {
    let name;
    let message;
    try {
      name = e.name === undefined ? "Error" : StringCtor(e.name);
    } catch {
      name = "Error";
    }
    try {
      message = e.message === undefined ? "" : StringCtor(e.message);
    } catch {
      message = "";
    }
    if (!name) return message;
    return message ? name + ": " + message : name;
  }

  function formatArgs(args) {
    const parts = [];
    for (let i = 0; i < args.length; i++) {
      try {
        parts.push(inspect(args[i], 0, []));
      } catch {
        parts.push("[unprintable]");
      }
    }
    return parts.join(" ");
  }

  const hostLog = host.log;
  function logger(level) {
    return {
      [level.toLowerCase()](...args) {
        hostLog(level, formatArgs(args).toWellFormed());
      },
    }[level.toLowerCase()];
  }
  const console = {
    log: logger("LOG"),
    info: logger("INFO"),
    warn: logger("WARN"),
    error: logger("ERROR"),
    debug: logger("DEBUG"),
  };
  console.trace = console.debug;
  define(g, "console", console);

  // ---- process.env: reads the current call's variables ----
  const envGet = host.envGet;
  const envKeys = host.envKeys;
  const envSet = host.envSet;
  const envDelete = host.envDelete;
  const env = new Proxy(
    {},
    {
      get(_target, key) {
        return typeof key === "string" ? envGet(key) : undefined;
      },
      has(_target, key) {
        return typeof key === "string" && envGet(key) !== undefined;
      },
      ownKeys() {
        return envKeys();
      },
      getOwnPropertyDescriptor(_target, key) {
        if (typeof key !== "string") return undefined;
        const value = envGet(key);
        if (value === undefined) return undefined;
        return { value, writable: true, enumerable: true, configurable: true };
      },
      set(_target, key, value) {
        if (typeof key !== "string") return false;
        envSet(key, StringCtor(value));
        return true;
      },
      deleteProperty(_target, key) {
        if (typeof key === "string") envDelete(key);
        return true;
      },
      defineProperty() {
        return false;
      },
    },
  );
  define(g, "process", { env });

  // ---- Determinism: seeded Math.random, fixed time ----
  define(Math, "random", host.random);
  const hostNow = host.now;
  // Not named `Date`: a function declaration of that name would be hoisted over `RealDate`.
  function FixedDate(...args) {
    if (new.target === undefined) return new RealDate(hostNow()).toString();
    if (args.length === 0) return Reflect.construct(RealDate, [hostNow()], new.target);
    return Reflect.construct(RealDate, args, new.target);
  }
  Object.defineProperty(FixedDate, "name", { value: "Date" });
  Object.defineProperty(FixedDate, "length", { value: 7 });
  Object.defineProperty(FixedDate, "prototype", { value: RealDate.prototype, writable: false });
  define(FixedDate, "now", function now() {
    return hostNow();
  });
  define(FixedDate, "parse", RealDate.parse);
  define(FixedDate, "UTC", RealDate.UTC);
  define(RealDate.prototype, "constructor", FixedDate);
  define(g, "Date", FixedDate);
  const hostElapsed = host.elapsed;
  define(g, "performance", {
    now() {
      return hostElapsed();
    },
  });

  // ---- TextEncoder / TextDecoder (UTF-8 only) ----
  const utf8Encode = host.utf8Encode;
  const utf8Decode = host.utf8Decode;
  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return utf8Encode(StringCtor(input).toWellFormed());
    }
    encodeInto(input, destination) {
      const s = StringCtor(input).toWellFormed();
      let read = 0;
      let written = 0;
      for (const ch of s) {
        const cp = ch.codePointAt(0);
        const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (written + n > destination.length) break;
        if (n === 1) {
          destination[written] = cp;
        } else if (n === 2) {
          destination[written] = 0xc0 | (cp >> 6);
          destination[written + 1] = 0x80 | (cp & 0x3f);
        } else if (n === 3) {
          destination[written] = 0xe0 | (cp >> 12);
          destination[written + 1] = 0x80 | ((cp >> 6) & 0x3f);
          destination[written + 2] = 0x80 | (cp & 0x3f);
        } else {
          destination[written] = 0xf0 | (cp >> 18);
          destination[written + 1] = 0x80 | ((cp >> 12) & 0x3f);
          destination[written + 2] = 0x80 | ((cp >> 6) & 0x3f);
          destination[written + 3] = 0x80 | (cp & 0x3f);
        }
        read += ch.length;
        written += n;
      }
      return { read, written };
    }
  }
  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label = "utf-8", options = {}) {
      const l = StringCtor(label).trim().toLowerCase();
      if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
        throw new RangeError(`The "${label}" encoding is not supported`);
      }
      this.#fatal = Boolean(options && options.fatal);
      this.#ignoreBOM = Boolean(options && options.ignoreBOM);
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input = undefined) {
      if (input === undefined) return "";
      let bytes;
      if (input instanceof ArrayBuffer) {
        bytes = new Uint8Array(input);
      } else if (ArrayBuffer.isView(input)) {
        bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
      } else {
        throw new TypeError("TextDecoder.decode: input must be an ArrayBuffer or a view of one");
      }
      // The bytes cross to Rust as a string of code units 0..=255, one per byte.
      let latin1 = "";
      for (let i = 0; i < bytes.length; i += 8192) {
        latin1 += StringCtor.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
      }
      return utf8Decode(latin1, this.#fatal, this.#ignoreBOM);
    }
  }
  define(g, "TextEncoder", TextEncoder);
  define(g, "TextDecoder", TextDecoder);

  // ---- atob / btoa ----
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function invalidCharacter(message) {
    const e = new Error(message);
    e.name = "InvalidCharacterError";
    return e;
  }
  function btoa(data) {
    const s = StringCtor(data);
    let out = "";
    for (let i = 0; i < s.length; i += 3) {
      const a = s.charCodeAt(i);
      const b = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      const c = i + 2 < s.length ? s.charCodeAt(i + 2) : 0;
      if (a > 255 || b > 255 || c > 255) {
        throw invalidCharacter("btoa: the string contains characters outside of the Latin1 range");
      }
      const n = (a << 16) | (b << 8) | c;
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      out += i + 1 < s.length ? B64[(n >> 6) & 63] : "=";
      out += i + 2 < s.length ? B64[n & 63] : "=";
    }
    return out;
  }
  function atob(data) {
    let s = StringCtor(data).replace(/[\t\n\f\r ]/g, "");
    if (s.length % 4 === 0) s = s.replace(/==?$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) {
      throw invalidCharacter("atob: the string to be decoded is not correctly encoded");
    }
    let out = "";
    let buffer = 0;
    let bits = 0;
    for (let i = 0; i < s.length; i++) {
      buffer = (buffer << 6) | B64.indexOf(s[i]);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += StringCtor.fromCharCode((buffer >> bits) & 0xff);
      }
    }
    return out;
  }
  define(g, "btoa", btoa);
  define(g, "atob", atob);

  // ---- Internals for the Rust side ----
  // The stack without the runtime's own frames, which sit at its bottom (the runtime calls
  // into user code, never the other way round).
  function userFrames(stack) {
    const lines = stack.replace(/\s+$/, "").split("\n");
    while (lines.length > 0) {
      const last = lines[lines.length - 1];
      if (last.includes("(/chorus:runtime") || /\(native\)$/.test(last)) lines.pop();
      else break;
    }
    return lines.join("\n");
  }

  function describeError(e) {
    try {
      if (e !== null && (typeof e === "object" || typeof e === "function")) {
        const marker = e.ConvexErrorSymbol;
        if (typeof marker === "symbol" && e[marker] === true) {
          const data = e.data;
          return {
            convex: true,
            name: "ConvexError",
            message: e.message === undefined ? "" : StringCtor(e.message),
            stack: "",
            data: typeof data === "string" ? data : (JSONStringify(data === undefined ? null : data) ?? "null"),
          };
        }
        if (e instanceof Error) {
          const headline = errorHeadline(e);
          const stack = typeof e.stack === "string" ? userFrames(e.stack) : "";
          return { convex: false, name: "", message: headline, stack, data: "" };
        }
      }
      return { convex: false, name: "", message: typeof e === "string" ? e : inspect(e, 0, []), stack: "", data: "" };
    } catch {
      return { convex: false, name: "", message: "(an exception that could not be printed)", stack: "", data: "" };
    }
  }

  function analyzeModule(namespace) {
    const found = [];
    for (const name of ObjectKeys(namespace)) {
      const value = namespace[name];
      if (value === null || (typeof value !== "object" && typeof value !== "function")) continue;
      const kinds = [];
      if ("isQuery" in value) kinds.push("query");
      if ("isMutation" in value) kinds.push("mutation");
      if ("isAction" in value) kinds.push("action");
      if (kinds.length !== 1) continue;
      const isPublic = "isPublic" in value;
      const isInternal = "isInternal" in value;
      if (isPublic && isInternal) continue;
      const args = typeof value.exportArgs === "function" ? value.exportArgs() : '{"type":"any"}';
      const returns = typeof value.exportReturns === "function" ? value.exportReturns() : "null";
      found.push({
        name,
        kind: kinds[0],
        visibility: isInternal ? "internal" : "public",
        args: StringCtor(args),
        returns: StringCtor(returns),
      });
    }
    return JSONStringify(found);
  }

  // The JSON of a schema module's default export (`defineSchema(...)`), whose `export()`
  // returns it as a string.
  function schemaExport(namespace) {
    const schema = namespace.default;
    if (schema === null || typeof schema !== "object" || typeof schema.export !== "function") {
      throw new TypeError("schema.js must export default defineSchema(...)");
    }
    const exported = schema.export();
    return typeof exported === "string" ? exported : JSONStringify(exported);
  }

  function exportKind(namespace, name) {
    const value = namespace[name];
    if (value === null || (typeof value !== "object" && typeof value !== "function")) return "";
    const kinds = [];
    if ("isQuery" in value) kinds.push("query");
    if ("isMutation" in value) kinds.push("mutation");
    if ("isAction" in value) kinds.push("action");
    return kinds.length === 1 ? kinds[0] : "";
  }

  function invoke(namespace, name, kind, requestId, argsJson) {
    const f = namespace[name];
    switch (kind) {
      case "query":
        return ReflectApply(f.invokeQuery, g, [argsJson]);
      case "mutation":
        return ReflectApply(f.invokeMutation, g, [argsJson]);
      case "action":
        return ReflectApply(f.invokeAction, g, [requestId, argsJson]);
    }
    throw new Error(`unknown function kind ${kind}`);
  }

  return { describeError, analyzeModule, schemaExport, exportKind, invoke };
}
