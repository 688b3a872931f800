/* kiln's dashboard: the one thing that needs a script, the live log of a
 * build that is queued or running. It asks /builds/<id>/log for what follows
 * the offset it has, every half second (as `kiln logs -f` looks), and adds
 * it as text: the server has turned colour codes into plain text, and
 * textContent never makes markup of it. */
"use strict";
(function () {
	var pre = document.getElementById("log");
	if (!pre)
		return;
	var id = pre.getAttribute("data-build");
	var offset = Number(pre.getAttribute("data-offset")) || 0;
	var state = pre.getAttribute("data-state");
	var live = function (s) { return s === "queued" || s === "running"; };
	if (!live(state))
		return;

	function showState(s) {
		var cell = document.getElementById("f-state");
		if (!cell || s === state)
			return;
		var span = document.createElement("span");
		span.className = "state s-" + s;
		span.textContent = s;
		cell.replaceChildren(span);
		pre.setAttribute("data-state", s);
	}

	function tick() {
		fetch("/builds/" + encodeURIComponent(id) + "/log?offset=" + offset,
		      { cache: "no-store", credentials: "same-origin" })
			.then(function (r) {
				if (!r.ok)
					throw new Error("HTTP " + r.status);
				var next = Number(r.headers.get("X-Kiln-Offset"));
				var s = r.headers.get("X-Kiln-State") || state;
				return r.text().then(function (t) { return [t, next, s]; });
			})
			.then(function (v) {
				var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
				if (v[0])
					pre.appendChild(document.createTextNode(v[0]));
				if (atEnd)
					pre.scrollTop = pre.scrollHeight;
				if (v[1] >= offset)
					offset = v[1];
				showState(v[2]);
				state = v[2];
				if (live(state) || v[0])
					setTimeout(tick, 500);
				else
					pre.classList.remove("live");
			})
			.catch(function () { setTimeout(tick, 2000); });
	}
	setTimeout(tick, 500);
})();
