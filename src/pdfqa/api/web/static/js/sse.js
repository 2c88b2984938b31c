// Server-sent events read from a fetch() response body, for streams that EventSource cannot
// open (a POST). Events are separated by a blank line; lines end in \r\n, \n or \r; lines that
// start with ":" are comments (keep-alives).

function parse(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  // A block without data (a keep-alive comment) or with empty data is not an event: an empty
  // string is not JSON, and a stream quiet for a while must not fail because of it.
  const text = data.join("\n");
  if (!text.trim()) return null;
  return { event, data: JSON.parse(text) };
}

export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // Normalise line ends, keeping a trailing \r that may be half of a \r\n.
      const keep = buffer.endsWith("\r") ? 1 : 0;
      buffer = buffer.slice(0, buffer.length - keep).replace(/\r\n?/g, "\n") + (keep ? "\r" : "");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const parsed = parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (parsed) yield parsed;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
