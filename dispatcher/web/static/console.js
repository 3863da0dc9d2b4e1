// Yujing duty console: keeps the alert board current without reloading the page.
//
// Every refresh interval it asks /console/board/rows (with the page's filters)
// for what changed: it sends the version it shows (If-None-Match) and the items
// it holds (X-Board-Have: code:digest,...). An unchanged board answers 304 with
// no body; otherwise JSON with the head and only the items it lacks. An event's
// zones open and close with its ▸ button, and stay so across refreshes.
//
// Cues: a new unacknowledged orange or red item beeps (WebAudio), puts the count
// in the tab title, shows a banner, and raises a desktop notification when the
// officer enabled them. No successful refresh for three intervals (server
// unreachable, network down) covers the page with a "connection lost" overlay;
// an ended login sends the browser to the login page.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board) { return; }
  var table = document.getElementById("board-table");
  var head = document.getElementById("board-head");
  var status = document.getElementById("refresh-status");
  var overlay = document.getElementById("stale-overlay");
  var staleTime = document.getElementById("stale-time");
  var banner = document.getElementById("cue-banner");
  var bannerText = document.getElementById("cue-text");
  var notifyButton = document.getElementById("notify-toggle");
  var source = board.getAttribute("data-refresh");
  var query = board.getAttribute("data-query") || "";
  var every = parseInt(board.getAttribute("data-every") || "10", 10) * 1000;
  var version = board.getAttribute("data-version") || "";
  var baseTitle = document.title;
  var lastOk = new Date();
  var digests = {};
  var seen = {};
  var pending = [];
  var cues = window.yujingCues = { beeps: 0, notifications: 0, refreshes: 0, unchanged: 0, last: "" };

  (board.getAttribute("data-have") || "").split(",").forEach(function (entry) {
    var at = entry.indexOf(":");
    if (at > 0) { digests[entry.slice(0, at)] = entry.slice(at + 1); }
  });
  items().forEach(function (item) { seen[item.getAttribute("data-key")] = true; });

  function items() { return Array.prototype.slice.call(table.querySelectorAll("tbody.item")); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }

  function show(text, stale) {
    if (!status) { return; }
    status.textContent = text;
    status.className = stale ? "refresh stale" : "refresh";
  }

  // --- cues

  function beep(red) {
    cues.beeps += 1;
    document.documentElement.setAttribute("data-beeps", String(cues.beeps));
    try {
      var Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) { return; }
      if (!cues.audio) { cues.audio = new Context(); }
      var audio = cues.audio;
      if (audio.state === "suspended" && audio.resume) { audio.resume(); }
      [0, 0.35, 0.7].forEach(function (at) {
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.type = "square";
        osc.frequency.value = red ? 880 : 660;
        gain.gain.value = 0.15;
        osc.connect(gain);
        gain.connect(audio.destination);
        osc.start(audio.currentTime + at);
        osc.stop(audio.currentTime + at + 0.22);
      });
      cues.oscillators = (cues.oscillators || 0) + 3;
    } catch (e) { /* no sound device: the title and the banner still say it */ }
  }

  function notifyEnabled() {
    return "Notification" in window && Notification.permission === "granted" &&
      window.localStorage.getItem("yujing-notify") === "on";
  }

  function setNotifyButton() {
    if (!notifyButton || !("Notification" in window)) { return; }
    notifyButton.hidden = false;
    notifyButton.textContent = notifyEnabled() ? "关闭桌面通知" : "开启桌面通知";
  }

  if (notifyButton && "Notification" in window) {
    notifyButton.addEventListener("click", function () {
      if (notifyEnabled()) {
        window.localStorage.setItem("yujing-notify", "off");
        setNotifyButton();
        return;
      }
      Notification.requestPermission().then(function (answer) {
        window.localStorage.setItem("yujing-notify", answer === "granted" ? "on" : "off");
        if (answer !== "granted") { show("浏览器未允许桌面通知（可在地址栏左侧的网站设置中开启）", false); }
        setNotifyButton();
      });
    });
    setNotifyButton();
  }

  function cue(fresh) {
    var red = fresh.some(function (item) { return item.getAttribute("data-level") === "red"; });
    pending = pending.concat(fresh.map(function (item) {
      return { code: item.getAttribute("data-key"), title: item.getAttribute("data-title"),
               zones: item.getAttribute("data-zones"), red: item.getAttribute("data-level") === "red" };
    }));
    var anyRed = pending.some(function (p) { return p.red; });
    document.title = "（" + pending.length + "）新" + (anyRed ? "红色" : "橙色") + "预警 — 预警值班台";
    bannerText.textContent = pending.map(function (p) {
      return "新" + p.title + "（编码 " + p.code + (p.zones && p.zones !== "0" ? "，" + p.zones + " 处隐患点" : "") + "）";
    }).join("；");
    banner.className = "cue-banner" + (anyRed ? " red" : "");
    banner.hidden = false;
    cues.last = fresh.map(function (item) { return item.getAttribute("data-key"); }).join(",");
    beep(red);
    if (notifyEnabled()) {
      fresh.forEach(function (item) {
        try {
          new Notification("新" + item.getAttribute("data-title"), {
            body: "编码 " + item.getAttribute("data-key") + "，请在预警值班台确认", tag: item.getAttribute("data-key")
          });
          cues.notifications += 1;
        } catch (e) { /* notifications refused by the platform */ }
      });
    }
  }

  document.getElementById("cue-dismiss").addEventListener("click", function () {
    pending = [];
    banner.hidden = true;
    document.title = baseTitle;
  });

  function lookForNew() {
    var fresh = items().filter(function (item) {
      var key = item.getAttribute("data-key");
      var alarming = item.getAttribute("data-state") === "firing" &&
        (item.getAttribute("data-level") === "red" || item.getAttribute("data-level") === "orange");
      var isNew = alarming && !seen[key];
      if (alarming) { seen[key] = true; }
      return isNew;
    });
    if (fresh.length) { cue(fresh); }
  }

  // --- expanding an event; ticking all its waiting zones

  table.addEventListener("click", function (event) {
    var target = event.target;
    if (target.hasAttribute("data-toggle")) {
      var item = target.closest("tbody.item");
      item.classList.toggle("open");
      target.textContent = item.classList.contains("open") ? "▾" : "▸";
    } else if (target.hasAttribute("data-pick-all")) {
      var body = target.closest("tbody.item");
      body.classList.add("open");
      body.querySelectorAll("input[type=checkbox][name=zone]").forEach(function (box) { box.checked = true; });
    }
  });

  // --- refresh

  function apply(answer) {
    head.innerHTML = answer.head;
    var held = {};
    items().forEach(function (item) { held[item.getAttribute("data-key")] = item; });
    var next = document.createDocumentFragment();
    var parser = document.createElement("table");
    answer.order.forEach(function (pair) {
      var key = pair[0], digest = pair[1], old = held[key], item = old;
      if (answer.rows[key] !== undefined) {
        parser.innerHTML = answer.rows[key];
        item = parser.querySelector("tbody");
        if (old) {
          // keep what the officer did on the old row: opened, ticked, typing a note
          if (old.classList.contains("open")) {
            item.classList.add("open");
            var toggle = item.querySelector("[data-toggle]");
            if (toggle) { toggle.textContent = "▾"; }
          }
          old.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
            var same = item.querySelector('input[type=checkbox][value="' + box.value + '"]');
            if (same) { same.checked = true; }
          });
          var note = old.querySelector("input[name=note]");
          var newNote = item.querySelector("input[name=note]");
          if (note && newNote) { newNote.value = note.value; }
        }
      }
      if (old && item !== old) { old.remove(); }  // replaced: the new row takes its place
      delete held[key];
      digests[key] = digest;
      if (item) { next.appendChild(item); }
    });
    Object.keys(held).forEach(function (key) { held[key].remove(); delete digests[key]; });
    table.appendChild(next);
    version = answer.version;
  }

  function have() {
    return items().map(function (item) {
      var key = item.getAttribute("data-key");
      return key + ":" + (digests[key] || "");
    }).join(",");
  }

  function fresh() {
    lastOk = new Date();
    overlay.hidden = true;
    show("已更新 " + clock(lastOk), false);
  }

  function refresh() {
    var headers = { "Accept": "application/json", "X-Board-Have": have() };
    if (version) { headers["If-None-Match"] = '"' + version + '"'; }
    fetch(source + (query ? "?" + query : ""), { credentials: "same-origin", headers: headers, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.href = "/console/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          return null;
        }
        if (response.status === 304) {
          cues.unchanged += 1;
          return response.text().then(function () { return "unchanged"; });  // read out: no body
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (answer) {
        if (answer === null) { return; }
        cues.refreshes += 1;
        if (answer !== "unchanged") { apply(answer); lookForNew(); }
        fresh();
      })
      .catch(function () {
        var seconds = Math.round((Date.now() - lastOk.getTime()) / 1000);
        show("连接中断，画面停留在 " + seconds + " 秒前", true);
      });
  }

  function watch() {
    if (Date.now() - lastOk.getTime() > 3 * every) {
      staleTime.textContent = clock(lastOk);
      overlay.hidden = false;
    }
  }

  show("已更新 " + clock(lastOk), false);
  window.setInterval(refresh, every);
  window.setInterval(watch, 1000);
})();
