// Where a value sits in JSON text: the line and column of the value at a path such as ["model", "layers", 1],
// so that an error the API names by its field path can be marked in the editor. Reads text JSON.parse accepted.

/** {line, col} (1-based) of the value at `path`, or of its deepest ancestor found; null if none. */
export function locate(text, path) {
  const found = new Map();
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const string = () => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = (at) => {
    ws();
    found.set(JSON.stringify(at), i);
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") { i++; return; }
      for (;;) {
        ws();
        const key = string();
        ws();
        i++; // :
        value([...at, key]);
        ws();
        if (text[i++] === "}") return;
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") { i++; return; }
      for (let k = 0; ; k++) {
        value([...at, k]);
        ws();
        if (text[i++] === "]") return;
      }
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && !",}] \t\n\r".includes(text[i])) i++;
    }
  };
  try {
    value([]);
  } catch {
    return null;
  }
  for (let n = path.length; n > 0; n--) {
    const pos = found.get(JSON.stringify(path.slice(0, n)));
    if (pos !== undefined) {
      const before = text.slice(0, pos).split("\n");
      return { line: before.length, col: before[before.length - 1].length + 1 };
    }
  }
  return null;
}
