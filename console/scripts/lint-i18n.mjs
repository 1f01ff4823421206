// Checks the console's text is all translated:
//  - src/i18n/en.ts and src/i18n/zh-CN.ts have the same keys, none empty;
//  - no component (.tsx under src/) shows a hard-coded string: JSX text with a letter in it, or
//    a string literal given to a text attribute (title, placeholder, aria-label, alt, label, ...);
//    text goes through t("key") (the TypeScript parser finds them, not a regex).
// Exit 1 naming each offence. Run: npm run lint-i18n (tests/console runs it in CI);
// --src DIR checks another tree.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const i = process.argv.indexOf("--src"); // another tree (the test of the lint itself)
const src = i >= 0 ? resolve(process.argv[i + 1]) : join(root, "src");
const TEXT_ATTRS = new Set(["title", "placeholder", "aria-label", "aria-description", "alt", "label", "aria-roledescription", "aria-valuetext"]);
const LETTER = /[\p{L}]/u;
const problems = [];

function dictionaryKeys(file) {
  const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const keys = new Map();
  const visit = (node) => {
    if (ts.isObjectLiteralExpression(node) && keys.size === 0) {
      for (const p of node.properties) {
        if (ts.isPropertyAssignment(p) && (ts.isStringLiteral(p.name) || ts.isIdentifier(p.name))) {
          const value = ts.isStringLiteral(p.initializer) ? p.initializer.text : null;
          keys.set(p.name.text, value);
        }
      }
      return;
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return keys;
}

const en = dictionaryKeys(join(src, "i18n/en.ts"));
const zh = dictionaryKeys(join(src, "i18n/zh-CN.ts"));
if (en.size === 0) problems.push("src/i18n/en.ts: no keys found");
for (const k of en.keys()) if (!zh.has(k)) problems.push(`src/i18n/zh-CN.ts: missing key ${k}`);
for (const k of zh.keys()) if (!en.has(k)) problems.push(`src/i18n/zh-CN.ts: key ${k} is not in en.ts`);
for (const [name, dict] of [["en.ts", en], ["zh-CN.ts", zh]]) {
  for (const [k, v] of dict) if (v === null || v.trim() === "") problems.push(`src/i18n/${name}: ${k} is empty or not a string literal`);
}

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".tsx") ? [p] : [];
  });
}

for (const file of files(src)) {
  const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true, ts.ScriptKind.TSX);
  const where = (node) => {
    const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
    return `${relative(root, file)}:${line + 1}`;
  };
  const visit = (node) => {
    if (ts.isJsxText(node) && LETTER.test(node.text)) {
      problems.push(`${where(node)}: hard-coded text ${JSON.stringify(node.text.trim())}: use t("key")`);
    }
    if (ts.isJsxAttribute(node) && node.initializer) {
      const name = node.name.getText(sf);
      const init = node.initializer;
      const literal = ts.isStringLiteral(init)
        ? init.text
        : ts.isJsxExpression(init) && init.expression && ts.isStringLiteral(init.expression)
          ? init.expression.text
          : null;
      if (TEXT_ATTRS.has(name) && literal !== null && LETTER.test(literal)) {
        problems.push(`${where(node)}: hard-coded ${name}=${JSON.stringify(literal)}: use t("key")`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}

if (problems.length) {
  console.error(problems.join("\n"));
  console.error(`${problems.length} i18n problem(s)`);
  process.exit(1);
}
console.log(`i18n: ${en.size} keys in en and zh-CN, no hard-coded text in components`);
