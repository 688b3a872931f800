/* kiln's dashboard: the one thing that needs a script, the live log of a
 * build that is queued or running. It listens to /builds/<id>/events
 * (Server-Sent Events): each message is the text that followed, its id the
 * log's byte offset after it, so a dropped connection resumes where it
 * stopped (the browser sends Last-Event-ID); "state" events move the state
 * cell, "end" ends it. The server has turned colour codes into plain text,
 * and textContent never makes markup of it. */
"use strict";
(function () {
	var pre = document.getElementById("log");
	if (!pre || typeof EventSource === "undefined")
		return;
	var id = pre.getAttribute("data-build");
	var offset = Number(pre.getAttribute("data-offset")) || 0;
	var state = pre.getAttribute("data-state");
	if (state !== "queued" && state !== "running")
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
		state = s;
	}

	function url() {
		return "/builds/" + encodeURIComponent(id) + "/events?offset=" + offset;
	}

	function listen() {
		var es = new EventSource(url());
		es.onmessage = function (e) {
			var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
			if (e.data)
				pre.appendChild(document.createTextNode(e.data));
			if (atEnd)
				pre.scrollTop = pre.scrollHeight;
			if (e.lastEventId)
				offset = Number(e.lastEventId);
		};
		es.addEventListener("state", function (e) { showState(e.data); });
		es.addEventListener("end", function (e) {
			showState(e.data);
			es.close();
			pre.classList.remove("live");
		});
		/* the browser retries a dropped stream itself; one refused is
		 * asked for again here only when that may help: 503 (too many
		 * streams) or no answer (kilnd restarting), not 404 (the build
		 * or the dashboard is gone) or 401 */
		es.onerror = function () {
			if (es.readyState !== EventSource.CLOSED)
				return;
			fetch(url(), { method: "HEAD", cache: "no-store", credentials: "same-origin" })
				.then(function (r) {
					if (r.ok || r.status === 503)
						setTimeout(listen, 5000);
					else
						pre.classList.remove("live");
				})
				.catch(function () { setTimeout(listen, 5000); });
		};
	}
	listen();
})();
