// Yujing duty console: keeps the alert board current without reloading the page.
// Every 10 s it fetches the board's rows (server-rendered HTML) and swaps them in.
// A failed fetch marks the board stale, so nobody trusts an old picture; an ended
// login sends the browser to the login page.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board) { return; }
  var source = board.getAttribute("data-refresh");
  var every = parseInt(board.getAttribute("data-every") || "10", 10) * 1000;
  var status = document.getElementById("refresh-status");
  var lastOk = Date.now();

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }

  function show(text, stale) {
    if (!status) { return; }
    status.textContent = text;
    status.className = stale ? "refresh stale" : "refresh";
  }

  function refresh() {
    fetch(source, { credentials: "same-origin", headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.href = "/console/login?next=" + encodeURIComponent(window.location.pathname);
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        board.innerHTML = html;
        lastOk = Date.now();
        show("已更新 " + clock(new Date()), false);
      })
      .catch(function () {
        var seconds = Math.round((Date.now() - lastOk) / 1000);
        show("连接中断，画面停留在 " + seconds + " 秒前", true);
      });
  }

  show("已更新 " + clock(new Date()), false);
  window.setInterval(refresh, every);
})();
