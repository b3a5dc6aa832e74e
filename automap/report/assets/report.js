(function () {
"use strict";
var root = document.documentElement;
function $(id) { return document.getElementById(id); }
function status(text) { $("status").textContent = text; }
window.addEventListener("error", function (e) {
  var p = $("status"); if (p) { p.className = "status error"; p.textContent = "report script error: " + e.message; }
});
var D = JSON.parse($("automap-data").textContent);
var SIDES = {t: D.target, s: D.source}, P = D.pairs, NP = P.length;
var SHAPES = D.shapes, DTYPES = D.dtypes, STR = D.strings, TFS = D.transforms;
var NK = D.evidence_numeric, TK = D.evidence_text;
var ROW = 24, PAGE = 100, PRINT_MAX = 3000, AUTO_OPEN_ROWS = 200;
var state = {thr: D.threshold, filter: "", only: false, by: "t", shown: PAGE, sel: -1, print: false, rows: [],
  depth: []};
var ICON = {none: "\u2717", pinned: "\u2713", low: "\u26a0", mid: "\u25cb", high: "\u25cf", unused: "\u2013"};
var WORD = {none: "no source", pinned: "reviewed", low: "doubtful", mid: "fair", high: "confident",
  unused: "not used"};

/* DOM built from text only: data never becomes markup. */
function h(tag, attrs) {
  var el = document.createElement(tag);
  if (attrs) for (var k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) el.setAttribute(k, attrs[k]);
  for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
  return el;
}
function add(el, x) {
  if (x === null || x === undefined || x === false) return;
  if (Array.isArray(x)) { for (var i = 0; i < x.length; i++) add(el, x[i]); return; }
  el.appendChild(typeof x === "object" ? x : document.createTextNode(String(x)));
}
/* a long dotted name may wrap after its dots, not inside a word */
function dotted(name) {
  var parts = name.split("."), out = [];
  for (var k = 0; k < parts.length; k++) out.push(k < parts.length - 1 ? [parts[k] + ".", h("wbr")] : parts[k]);
  return out;
}
function fmt(c) { return (Math.round(c * 100) / 100).toFixed(2); }
function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

/* names */
function modPath(side, n) {
  var c = side.mp || (side.mp = []);
  if (c[n] !== undefined) return c[n];
  var node = side.nodes[n], parent = node[0];
  return (c[n] = n === 0 ? "" : (parent === 0 ? node[1] : modPath(side, parent) + "." + node[1]));
}
function fullName(side, i) {
  var c = side.fn || (side.fn = new Array(side.params.length));
  if (c[i] !== undefined) return c[i];
  var p = side.params[i];
  return (c[i] = p[0] === 0 ? p[1] : modPath(side, p[0]) + "." + p[1]);
}
function lower(side, i) {
  var c = side.lc || (side.lc = new Array(side.params.length));
  return c[i] !== undefined ? c[i] : (c[i] = fullName(side, i).toLowerCase());
}
function shapeText(k) { return k < 0 ? "?" : "[" + SHAPES[k].join(", ") + "]"; }
function dtypeText(k) { return k < 0 ? "" : DTYPES[k]; }

/* pairs */
function srcs(s) { return s === -1 ? [] : (typeof s === "number" ? [s] : s); }
function matched(i) { return P[i][0] !== -1; }
function pinned(i) { return P[i][2] === 1; }
function doubtful(i) { return matched(i) && !pinned(i) && P[i][1] < state.thr; }
function review(i) { return !matched(i) || doubtful(i); }
function level(i) {
  if (!matched(i)) return "none";
  if (pinned(i)) return "pinned";
  var c = P[i][1];
  if (c < state.thr) return "low";
  return c >= Math.max(0.9, state.thr) ? "high" : "mid";
}
var RANK = {none: 0, low: 1, mid: 2, pinned: 3, high: 4};
var USERS = null;
function users(j) {
  if (!USERS) {
    USERS = [];
    for (var i = 0; i < NP; i++) {
      var s = srcs(P[i][0]);
      for (var k = 0; k < s.length; k++) (USERS[s[k]] || (USERS[s[k]] = [])).push(i);
    }
  }
  return USERS[j] || [];
}
function worst(list) {
  var best = -1;
  for (var k = 0; k < list.length; k++) if (best < 0 || RANK[level(list[k])] < RANK[level(best)]) best = list[k];
  return best;
}
function badge(lvl, c) {
  return h("span", {"class": "badge lvl-" + lvl, title: WORD[lvl]}, ICON[lvl] + " " +
    (lvl === "none" || lvl === "unused" ? WORD[lvl] : fmt(c)), h("span", {"class": "sr"}, " " + WORD[lvl]));
}
function marks(tf) {
  if (tf < 0) return null;
  var t = TFS[tf], bits = t[1], out = [];
  if (bits & 1) out.push(h("span", {"class": "mark", title: t[0]}, "split " + (t[2] + 1) + "/" + t[3]));
  if (bits & 2) out.push(h("span", {"class": "mark", title: t[0]}, "fused \u00d7" + t[3]));
  if (bits & 4) out.push(h("span", {"class": "mark", title: t[0]}, "transposed"));
  if (bits & 8) out.push(h("span", {"class": "mark", title: t[0]}, "layout"));
  return out;
}
function srcNames(s) {
  var l = srcs(s), out = [];
  for (var k = 0; k < l.length; k++) out.push(fullName(D.source, l[k]));
  return out.join(" + ");
}
function srcShapes(s) {
  var l = srcs(s), out = [];
  for (var k = 0; k < l.length; k++) out.push(shapeText(D.source.params[l[k]][2]));
  return out.join(" + ");
}
function srcDtypes(s) {
  var l = srcs(s), out = [];
  for (var k = 0; k < l.length; k++) out.push(dtypeText(D.source.params[l[k]][3]));
  return out.join(" + ");
}

/* filtering */
function matchesT(i) {
  if (state.only && !review(i)) return false;
  var f = state.filter;
  if (!f) return true;
  if (lower(D.target, i).indexOf(f) >= 0) return true;
  var s = srcs(P[i][0]);
  for (var k = 0; k < s.length; k++) if (lower(D.source, s[k]).indexOf(f) >= 0) return true;
  return false;
}
function matchesS(j) {
  var u = users(j);
  if (state.only) {
    var any = u.length === 0;
    for (var k = 0; k < u.length && !any; k++) any = review(u[k]);
    if (!any) return false;
  }
  var f = state.filter;
  if (!f) return true;
  if (lower(D.source, j).indexOf(f) >= 0) return true;
  for (var m = 0; m < u.length; m++) if (lower(D.target, u[m]).indexOf(f) >= 0) return true;
  return false;
}
function filtering() { return state.filter !== "" || state.only; }

/* the tree: items per node in first-appearance order (~node for a module, index for a parameter) */
function items(side) {
  if (side.items) return side.items;
  var nn = side.nodes.length, it = new Array(nn), seen = new Uint8Array(nn);
  for (var n = 0; n < nn; n++) it[n] = [];
  seen[0] = 1;
  for (var i = 0; i < side.params.length; i++) {
    var node = side.params[i][0], chain = [];
    while (!seen[node]) { seen[node] = 1; chain.push(node); node = side.nodes[node][0]; }
    for (var k = chain.length - 1; k >= 0; k--) it[side.nodes[chain[k]][0]].push(~chain[k]);
    it[side.params[i][0]].push(i);
  }
  side.items = it;
  side.open = new Uint8Array(nn);
  side.fclosed = new Uint8Array(nn);
  /* collapsed by default: open breadth-first while the view stays small */
  var queue = [0], shown = it[0].length;
  side.open[0] = 1;
  while (queue.length) {
    var m = queue.shift(), list = it[m];
    for (var q = 0; q < list.length; q++) {
      if (list[q] >= 0) continue;
      var c = ~list[q];
      if (shown + it[c].length <= AUTO_OPEN_ROWS) { side.open[c] = 1; shown += it[c].length; queue.push(c); }
    }
  }
  return it;
}
function isOpen(side, n) { return filtering() ? !side.fclosed[n] : side.open[n] === 1; }
var AGG = {};
function aggregates(by) {
  if (AGG[by]) return AGG[by];
  var side = SIDES[by], nn = side.nodes.length, count = new Int32Array(nn), bad = new Int32Array(nn);
  var lcp = new Array(nn), other = by === "t" ? D.source : D.target;
  for (var i = 0; i < side.params.length; i++) {
    var flagged, partners;
    if (by === "t") { flagged = review(i); partners = srcs(P[i][0]); }
    else { partners = users(i); flagged = partners.length === 0 || doubtful(worst(partners)); }
    var parts = null;
    if (partners.length) {
      var pn = other.params[partners[0]][0];
      parts = pn === 0 ? [] : modPath(other, pn).split(".");
    }
    for (var n = side.params[i][0]; n > 0; n = side.nodes[n][0]) {
      count[n]++; if (flagged) bad[n]++;
      if (parts) {
        if (lcp[n] === undefined) lcp[n] = parts.slice();
        else { var a = lcp[n], z = 0; while (z < a.length && z < parts.length && a[z] === parts[z]) z++; a.length = z; }
      }
    }
  }
  return (AGG[by] = {count: count, bad: bad, lcp: lcp});
}
function flatten() {
  var side = SIDES[state.by], it = items(side), f = filtering(), ok = null, mark = null, n;
  var match = state.by === "t" ? matchesT : matchesS, hits = 0;
  if (f) {
    ok = new Uint8Array(side.params.length); mark = new Uint8Array(side.nodes.length);
    for (var i = 0; i < side.params.length; i++) {
      if (!match(i)) continue;
      ok[i] = 1; hits++;
      for (n = side.params[i][0]; n > 0 && !mark[n]; n = side.nodes[n][0]) mark[n] = 1;
    }
  }
  var rows = [], depth = [], stack = [[0, 0, 0]];
  while (stack.length) {
    var top = stack[stack.length - 1], list = it[top[0]];
    if (top[1] >= list.length) { stack.pop(); continue; }
    var x = list[top[1]++];
    if (x < 0) {
      if (f && !mark[~x]) continue;
      rows.push(x); depth.push(top[2]);
      if (isOpen(side, ~x)) stack.push([~x, 0, top[2] + 1]);
    } else {
      if (f && !ok[x]) continue;
      rows.push(x); depth.push(top[2]);
    }
  }
  state.rows = rows; state.depth = depth;
  var total = side.params.length;
  $("tree-count").textContent = f ? plural(hits, "parameter") + " of " + total + " match" :
    plural(total, "parameter");
}

/* rows */
function moduleRow(n, d) {
  var side = SIDES[state.by], agg = aggregates(state.by);
  var open = isOpen(side, n), path = modPath(side, n), partner = agg.lcp[n];
  var left = h("span", {"class": "c name left"},
    h("button", {type: "button", "class": "tog", "data-node": n, "aria-expanded": String(open),
      "aria-label": (open ? "collapse " : "expand ") + path}, open ? "\u25be" : "\u25b8"),
    h("span", {"class": "seg", title: path}, side.nodes[n][1]), " ",
    h("span", {"class": "agg"}, plural(agg.count[n], "parameter") +
      (agg.bad[n] ? " \u00b7 \u26a0 " + agg.bad[n] + " to review" : "")));
  left.style.paddingLeft = (d * 1.1) + "em";
  var right = h("span", {"class": "c right", title: "corresponding " + (state.by === "t" ? "source" : "target") +
    " module"}, partner === undefined ? "" : (partner.length ? partner.join(".") : "(top level)"));
  var row = h("div", {"class": "row mod", role: "treeitem", "aria-level": d + 1, "aria-expanded": String(open)},
    left, h("span", {"class": "c conf"}, agg.bad[n] ? h("span", {"class": "badge lvl-low"}, "\u26a0 " + agg.bad[n])
      : ""), right);
  return row;
}
function paramRow(x, d) {
  var by = state.by, side = SIDES[by], p = side.params[x], lvl, c = 0, tf = -1, partner, pshape, pdtype, pair;
  if (by === "t") {
    pair = x; lvl = level(x); c = P[x][1]; tf = P[x][3];
    partner = matched(x) ? srcNames(P[x][0]) : "\u2014 no source \u2014";
    pshape = srcShapes(P[x][0]); pdtype = srcDtypes(P[x][0]);
  } else {
    var u = users(x);
    pair = worst(u);
    if (pair < 0) { lvl = "unused"; partner = "\u2014 not used by any target \u2014"; pshape = ""; pdtype = ""; }
    else {
      lvl = level(pair); c = P[pair][1]; tf = P[pair][3];
      var names = [], shapes = [], dts = [];
      for (var k = 0; k < u.length; k++) {
        names.push(fullName(D.target, u[k])); shapes.push(shapeText(D.target.params[u[k]][2]));
        dts.push(dtypeText(D.target.params[u[k]][3]));
      }
      partner = names.join(", "); pshape = shapes.join(", "); pdtype = dts.join(", ");
    }
  }
  var name = fullName(side, x);
  var left = h("span", {"class": "c name", title: name},
    h("button", {type: "button", "class": "link", "data-i": x, "aria-label": "details of " + name}, p[1]));
  left.style.paddingLeft = (d * 1.1 + 1.4) + "em";
  var cls = "row param lvl-" + lvl + (by === "t" && x === state.sel ? " sel" : "");
  return h("div", {"class": cls, role: "treeitem", "aria-level": d + 1, "data-name": name},
    left, h("span", {"class": "c"}, shapeText(p[2])), h("span", {"class": "c dt"}, dtypeText(p[3])),
    h("span", {"class": "c conf"}, badge(lvl, c), marks(tf)),
    h("span", {"class": "c name partner", title: partner}, partner),
    h("span", {"class": "c", title: pshape}, pshape), h("span", {"class": "c dt"}, pdtype));
}
var tree = $("tree"), inner = $("tree-inner"), win = $("tree-window");
function renderRows() {
  var rows = state.rows, n = rows.length, first = 0, last = n;
  if (state.print) {
    inner.style.height = "auto"; win.style.top = "0"; last = Math.min(n, PRINT_MAX);
  } else {
    var height = Math.max(ROW * 3, Math.min(n * ROW + 2, Math.round(window.innerHeight * 0.65)));
    tree.style.height = height + "px";
    inner.style.height = (n * ROW) + "px";
    var top = tree.scrollTop;
    first = Math.max(0, Math.floor(top / ROW) - 10);
    last = Math.min(n, Math.ceil((top + height) / ROW) + 10);
    win.style.top = (first * ROW) + "px";  /* not a transform: those lose precision past a million pixels */
  }
  var frag = document.createDocumentFragment();
  for (var r = first; r < last; r++) {
    var x = rows[r];
    frag.appendChild(x < 0 ? moduleRow(~x, state.depth[r]) : paramRow(x, state.depth[r]));
  }
  win.replaceChildren(frag);
}
var pending = false;
tree.addEventListener("scroll", function () {
  if (pending) return;
  pending = true;
  requestAnimationFrame(function () { pending = false; renderRows(); });
});
tree.addEventListener("click", function (e) {
  var t = e.target.closest("button");
  if (!t) return;
  if (t.hasAttribute("data-node")) {
    var side = SIDES[state.by], n = +t.getAttribute("data-node");
    if (filtering()) side.fclosed[n] ^= 1; else side.open[n] ^= 1;
    flatten(); renderRows();
    var again = win.querySelector('button[data-node="' + n + '"]');
    if (again) again.focus();
  } else if (t.hasAttribute("data-i")) {
    var i = +t.getAttribute("data-i");
    if (state.by === "t") { state.sel = i; renderRows(); showDetail(i); } else showSource(i);
  }
});
function setAll(open) {
  var side = SIDES[state.by]; items(side);
  if (filtering()) side.fclosed.fill(open ? 0 : 1); else { side.open.fill(open ? 1 : 0); side.open[0] = 1; }
  flatten(); tree.scrollTop = 0; renderRows();
}
$("expand").addEventListener("click", function () { setAll(true); });
$("collapse").addEventListener("click", function () { setAll(false); });

/* review items */
function tokens(name) {
  return name.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/([A-Za-z])([0-9])/g, "$1 $2")
    .replace(/([0-9])([A-Za-z])/g, "$1 $2").toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
}
function tokenList(list, other) {
  var set = {};
  for (var k = 0; k < other.length; k++) set[other[k]] = 1;
  return h("span", {"class": "tokens"}, list.map(function (t) {
    return h("span", {"class": "tok" + (set[t] ? " shared" : ""), title: set[t] ? "shared token" : null}, t);
  }));
}
function position(side, i) {
  if (side === D.source && !D.source_order_known) return "order in the source file not known";
  return "#" + i + " of " + side.params.length;
}
function where(side, i) {
  var n = side.params[i][0];
  return n === 0 ? "(top level)" : modPath(side, n);
}
function sourceCells(s, tf) {
  var l = srcs(s);
  if (!l.length) return [h("td", null, "\u2014 none \u2014"), h("td"), h("td"), h("td")];
  var poss = l.map(function (j) { return D.source_order_known ? "#" + j : ""; }).join(" + ");
  var used = [];
  l.forEach(function (j) { users(j).forEach(function (u) { used.push(fullName(D.target, u)); }); });
  return [h("td", {"class": "mono src"}, dotted(srcNames(s))), h("td", {"class": "mono shape"}, srcShapes(s)),
    h("td", {"class": "n"}, poss), h("td", null, tf >= 0 ? TFS[tf][0] : "")];
}
function usedBy(s, self) {
  var out = [];
  srcs(s).forEach(function (j) { users(j).forEach(function (u) { if (u !== self) out.push(u); }); });
  if (!out.length) return "";
  return dotted(out.map(function (u) { return fullName(D.target, u) + " (" + fmt(P[u][1]) + ")"; }).join(", "));
}
function card(i, headingLevel) {
  var pr = P[i], lvl = level(i), tname = fullName(D.target, i), tp = D.target.params[i];
  var el = h("li", {"class": "item lvl-" + lvl, "data-target": tname});
  add(el, h("h" + headingLevel, null, badge(lvl, pr[1]), marks(pr[3]), " ", tname));
  var first = srcs(pr[0]), sname = matched(i) ? srcNames(pr[0]) : "";
  var targetFacts = "  " + shapeText(tp[2]) + " " + dtypeText(tp[3]) + "  \u00b7 " + position(D.target, i) +
    " \u00b7 in " + where(D.target, i);
  var sourceFacts = matched(i) ? "  " + srcShapes(pr[0]) + " " + srcDtypes(pr[0]) + "  \u00b7 " +
    first.map(function (j) { return position(D.source, j); }).join(" + ") + " \u00b7 in " +
    first.map(function (j) { return where(D.source, j); }).join(" + ") : "";
  var kv = h("dl", {"class": "kv"},
    h("dt", null, "target"), h("dd", {"class": "mono"}, dotted(tname), targetFacts),
    h("dt", null, "source"),
    h("dd", {"class": "mono"}, matched(i) ? dotted(sname) : "\u2014 none \u2014", sourceFacts));
  if (pr[3] >= 0) add(kv, [h("dt", null, "layout"), h("dd", null, TFS[pr[3]][0])]);
  for (var k = 0; k < pr[5].length; k++) {
    if (pr[5][k] === null) continue;
    add(kv, [h("dt", null, TK[k] === "decided_by" ? "decided by" : TK[k].replace(/_/g, " ")),
      h("dd", null, STR[pr[5][k]])]);
  }
  if (pinned(i)) add(kv, [h("dt", null, "review"), h("dd", null, "\u2713 marked as reviewed by a person")]);
  add(el, kv);
  var cols = h("div", {"class": "columns"}), left = h("div"), right = h("div");
  if (pr[4].length) {
    var ev = h("table", {"class": "t evidence"}, h("caption", {"class": "sr"}, "evidence scores"));
    for (var e = 0; e < pr[4].length; e++) {
      if (pr[4][e] === null) continue;
      var v = pr[4][e] / 100;
      var fill = h("span", {"class": "fill"});
      fill.style.width = Math.max(0, Math.min(1, v)) * 100 + "%";
      add(ev, h("tr", {title: D.signals[NK[e]] || null}, h("th", {scope: "row"}, NK[e].replace(/_/g, " ")),
        h("td", null, h("span", {"class": "meter", "aria-hidden": "true"}, fill)), h("td", {"class": "n"}, fmt(v))));
    }
    add(left, [h("h4", null, "Evidence (1 = agrees)"), ev]);
  }
  if (matched(i)) {
    var tt = tokens(tname), st = tokens(sname);
    add(left, [h("h4", null, "Name tokens (shared ones bold, underlined)"),
      h("div", null, "target: ", tokenList(tt, st)), h("div", null, "source: ", tokenList(st, tt))]);
  }
  var alts = h("table", {"class": "t alternatives"},
    h("thead", null, h("tr", null, h("th", null, ""), h("th", null, "source"), h("th", null, "shape"),
      h("th", null, "position"), h("th", null, "layout"), h("th", null, "confidence"), h("th", null, "also used by"))));
  var body = h("tbody");
  if (matched(i)) {
    add(body, h("tr", {"class": "chosen"}, h("td", null, "chosen"), sourceCells(pr[0], pr[3]),
      h("td", {"class": "n"}, fmt(pr[1])), h("td", {"class": "mono used"}, usedBy(pr[0], i))));
  }
  for (var a = 0; a < pr[6].length; a++) {
    var alt = pr[6][a];
    add(body, h("tr", null, h("td", null, "alternative " + (a + 1)), sourceCells(alt[0], alt.length > 2 ? alt[2] : -1),
      h("td", {"class": "n"}, fmt(alt[1])), h("td", {"class": "mono used"}, usedBy(alt[0], -1))));
  }
  add(alts, body);
  add(right, [h("h4", null, pr[6].length ? "Chosen source and alternatives" : "Chosen source (no alternative)"),
    alts]);
  var ctx = h("table", {"class": "t context"});
  for (var o = Math.max(0, i - 2); o <= Math.min(NP - 1, i + 2); o++) {
    add(ctx, h("tr", {"class": o === i ? "chosen" : null}, h("td", {"class": "n"}, "#" + o),
      h("td", {"class": "mono"}, dotted(fullName(D.target, o))), h("td", null, "\u2190"),
      h("td", {"class": "mono"}, matched(o) ? dotted(srcNames(P[o][0])) : "\u2014"),
      h("td", null, badge(level(o), P[o][1]))));
  }
  add(right, [h("h4", null, "Neighbours in target order"), ctx]);
  add(cols, [left, right]);
  add(el, cols);
  return el;
}
function showDetail(i) {
  $("detail").replaceChildren(h("ol", {"class": "review-list"}, card(i, "h3")));
  $("detail").scrollIntoView({block: "nearest"});
}
function showSource(j) {
  var u = users(j);
  if (u.length) { showDetail(worst(u)); return; }
  var name = fullName(D.source, j), cands = [];
  for (var i = 0; i < NP; i++) {
    var alts = P[i][6];
    for (var a = 0; a < alts.length; a++) if (srcs(alts[a][0]).indexOf(j) >= 0) cands.push([i, alts[a][1]]);
  }
  cands.sort(function (x, y) { return y[1] - x[1]; });
  var el = h("li", {"class": "item lvl-none"}, h("h3", null, badge("unused", 0), " ", name),
    h("p", null, shapeText(D.source.params[j][2]) + " " + dtypeText(D.source.params[j][3]) + " \u00b7 " +
      position(D.source, j) + " \u00b7 in " + where(D.source, j) + ". No target uses it."),
    h("h4", null, cands.length ? "Runner-up for" : "Not a runner-up for any target"),
    h("ul", null, cands.slice(0, 20).map(function (c) {
      return h("li", {"class": "mono"}, fullName(D.target, c[0]) + " (" + fmt(c[1]) + ")");
    })));
  $("detail").replaceChildren(h("ol", {"class": "review-list"}, el));
  $("detail").scrollIntoView({block: "nearest"});
}
function reviewItems() {
  var out = [];
  for (var i = 0; i < NP; i++) if (review(i) && matchesT(i)) out.push(i);
  out.sort(function (a, b) { return (matched(a) - matched(b)) || (P[a][1] - P[b][1]) || (a - b); });
  return out;
}
function renderReview() {
  var list = reviewItems(), n = Math.min(list.length, state.print ? Math.max(state.shown, 500) : state.shown);
  var frag = document.createDocumentFragment();
  for (var k = 0; k < n; k++) frag.appendChild(card(list[k], "h3"));
  if (!list.length) frag.appendChild(h("li", {"class": "empty"}, filtering() || state.filter ?
    "Nothing that matches the filter needs review." : "Nothing needs review at this threshold."));
  $("review-list").replaceChildren(frag);
  setK("review-listed", list.length);
  var more = $("more");
  more.hidden = n >= list.length;
  more.textContent = "Show " + Math.min(PAGE, list.length - n) + " more (" + (list.length - n) + " not shown)";
}
$("more").addEventListener("click", function () { state.shown += PAGE; renderReview(); });

/* summary, histogram */
function setK(key, value) {
  var els = document.querySelectorAll('[data-k="' + key + '"]');
  for (var k = 0; k < els.length; k++) els[k].textContent = String(value);
}
function renderSummary() {
  var pairs = 0, doubt = 0, none = 0, pins = 0, split = 0, fused = 0, trans = 0;
  var used = new Uint8Array(D.source.params.length);
  for (var i = 0; i < NP; i++) {
    if (!matched(i)) { none++; continue; }
    pairs++;
    if (pinned(i)) pins++; else if (P[i][1] < state.thr) doubt++;
    var tf = P[i][3];
    if (tf >= 0) { if (TFS[tf][1] & 1) split++; if (TFS[tf][1] & 4) trans++; }
    var s = srcs(P[i][0]);
    if (s.length > 1) fused++;
    for (var k = 0; k < s.length; k++) used[s[k]] = 1;
  }
  var unused = 0;
  for (var j = 0; j < used.length; j++) if (!used[j]) unused++;
  setK("pairs", pairs); setK("doubtful", doubt); setK("unmatched-target", none); setK("unmatched-source", unused);
  setK("pinned", pins); setK("split", split); setK("fused", fused); setK("transposed", trans);
  setK("excluded-source", D.excluded.source_count); setK("excluded-target", D.excluded.target_count);
  setK("threshold", fmt(state.thr)); setK("review", doubt + none);
  $("thr-out").textContent = fmt(state.thr);
  var svg = $("hist"), left = +svg.getAttribute("data-left"), width = +svg.getAttribute("data-width");
  var x = left + state.thr * width, line = $("hist-thr"), label = $("hist-thr-label");
  line.setAttribute("x1", x.toFixed(1)); line.setAttribute("x2", x.toFixed(1));
  label.setAttribute("x", (state.thr > 0.75 ? x - 78 : x + 3).toFixed(1));
  label.textContent = "threshold " + fmt(state.thr);
  var bars = svg.querySelectorAll(".bar");
  for (var b = 0; b < bars.length; b++) {
    bars[b].classList.toggle("below", +bars[b].getAttribute("data-hi") <= state.thr + 1e-9);
  }
}
function renderLeftovers() {
  var list = $("unused-list"), frag = document.createDocumentFragment(), n = 0;
  for (var j = 0; j < D.source.params.length; j++) {
    if (users(j).length) continue;
    n++;
    if (n <= 1000) frag.appendChild(h("li", {"class": "mono"}, fullName(D.source, j) + "  " +
      shapeText(D.source.params[j][2]) + " " + dtypeText(D.source.params[j][3])));
  }
  if (n > 1000) frag.appendChild(h("li", null, "\u2026 and " + (n - 1000) + " more"));
  list.replaceChildren(frag);
  setK("unused-listed", n);
  ["source", "target"].forEach(function (side) {
    var names = D.excluded[side], count = D.excluded[side + "_count"], ol = $("excluded-" + side).querySelector("ol");
    add(ol, names.map(function (x) { return h("li", {"class": "mono"}, x); }));
    if (count > names.length) add(ol, h("li", null, "\u2026 and " + (count - names.length) + " more"));
    setK("excluded-" + side + "-listed", count);
  });
}

/* controls */
var timer = 0;
function refresh(what) {
  clearTimeout(timer);
  timer = setTimeout(function () { update(what); }, 80);
}
function update(what) {
  if (what === "thr") { AGG = {}; renderSummary(); }
  state.shown = PAGE;
  renderReview();
  flatten(); renderRows();
  var parts = [];
  if (state.filter) parts.push("filter \u201c" + state.filter + "\u201d");
  if (state.only) parts.push("only what needs review");
  status(parts.length ? "Showing " + parts.join(", ") + "." : "");
}
$("filter").addEventListener("input", function () {
  state.filter = this.value.trim().toLowerCase();
  items(SIDES[state.by]); SIDES[state.by].fclosed.fill(0);
  refresh("filter");
});
$("thr").addEventListener("input", function () { state.thr = +this.value; refresh("thr"); });
$("only").addEventListener("change", function () { state.only = this.checked; refresh("only"); });
function setBy(by) {
  state.by = by;
  $("by-name").textContent = by === "t" ? "target" : "source";
  $("head-left").textContent = by === "t" ? "target" : "source";
  $("head-right").textContent = by === "t" ? "source" : "target(s)";
  document.querySelector('input[name="by"][value="' + by + '"]').checked = true;
  tree.scrollTop = 0;
}
var radios = document.querySelectorAll('input[name="by"]');
for (var r = 0; r < radios.length; r++) radios[r].addEventListener("change", function () {
  setBy(this.value); update("by");
});
window.addEventListener("resize", function () { renderRows(); });
window.addEventListener("beforeprint", function () { state.print = true; renderRows(); renderReview(); });
window.addEventListener("afterprint", function () { state.print = false; renderRows(); renderReview(); });

/* start: #threshold=0.3&filter=norm&only=1&by=s preselects the controls */
var hash = {};
location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
  var k = kv.indexOf("=");
  if (k > 0) {
    try { hash[kv.slice(0, k)] = decodeURIComponent(kv.slice(k + 1)); } catch (e) { /* ignore a bad hash */ }
  }
});
if (hash.threshold !== undefined && isFinite(+hash.threshold) && +hash.threshold >= 0 && +hash.threshold <= 1) {
  state.thr = +hash.threshold;
}
if (hash.filter) { state.filter = hash.filter.trim().toLowerCase(); $("filter").value = hash.filter; }
if (hash.only === "1") { state.only = true; $("only").checked = true; }
if (hash.by === "s") setBy("s");
$("thr").value = String(state.thr);
items(D.target); items(D.source);
renderSummary();
renderLeftovers();
update("start");
root.setAttribute("data-ready", "1");
})();
