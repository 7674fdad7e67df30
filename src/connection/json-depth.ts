const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Nesting depth of a JSON text, read byte by byte without parsing it (`{}` is 1, `{"a":[1]}` is 2). Checked
 * before JSON.parse: V8 parses a 10,000-level document, but JSON.stringify of it overflows the stack near
 * 4,175 levels, and zod recurses too, so depth must be refused before anything walks the value. Stops at the
 * first level over `max`; malformed text is left to JSON.parse.
 */
export function jsonDepthExceeds(text: Buffer | string, max: number): boolean {
  // Strings are read by char code (the ASCII brackets and quotes are the same code units), not copied.
  const isString = typeof text === 'string';
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = isString ? (text as string).charCodeAt(i) : (text as Buffer)[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}
