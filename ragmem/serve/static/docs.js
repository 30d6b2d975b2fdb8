// The API's routes, read from /openapi.json: nothing is fetched from elsewhere.
"use strict";
(async () => {
  const root = document.getElementById("api");
  const spec = await (await fetch("/openapi.json")).json();
  const schemas = (spec.components || {}).schemas || {};
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const describe = (schema) => {
    if (!schema) return "";
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.anyOf) return schema.anyOf.map(describe).join(" | ");
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.type === "array") return describe(schema.items) + "[]";
    return schema.type || "object";
  };
  root.textContent = "";
  root.append(el("p", spec.info.description || ""));
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const card = el("section", "", "route");
      card.append(el("h2", `${method.toUpperCase()} ${path}`));
      card.append(el("p", op.summary || ""));
      const params = (op.parameters || []).map((p) =>
        `${p.name} (${p.in}${p.required ? ", required" : ""}): ${describe(p.schema)}`);
      const body = op.requestBody && op.requestBody.content["application/json"];
      if (body) {
        const name = describe(body.schema);
        const props = (schemas[name] || {}).properties || {};
        for (const [key, s] of Object.entries(props)) {
          params.push(`${key} (body): ${describe(s)}${s.description ? " - " + s.description : ""}`);
        }
      }
      if (params.length) {
        const list = el("ul");
        params.forEach((p) => list.append(el("li", p)));
        card.append(list);
      }
      root.append(card);
    }
  }
})().catch((e) => { document.getElementById("api").textContent = "Could not read /openapi.json: " + e; });
