/*
 * clickback refid.js: keeps the RefID a tracking link adds to a landing page URL
 * until the visitor converts, so the advertiser's server can fire the postback.
 *
 *   <script src="https://TRACKER/kit/refid.js" data-days="30"></script>
 *
 * data-param  query parameter and hidden-field name (default "refid"; "clickid" is
 *             read from the URL too)
 * data-days   the offer's attribution window in days (default 30): a RefID is kept
 *             that long from when it was issued, and one in the URL issued before is
 *             not taken
 * data-cookie first-party cookie name (default "clickback_refid")
 * data-domain the cookie's domain, to share it with the site's other subdomains
 *             ("shop.example" on www.shop.example and pay.shop.example); ignored
 *             unless this page's host is that domain or under it (default: this host)
 *
 * A RefID in the URL (its query, or a path segment where the offer's URL has `{refid}`)
 * is stored in the cookie (a newer click replaces an older one; an older RefID in the
 * URL than the cookie's, from an old tab or a bookmark, does not);
 * every <input name="refid"> is filled with it once the page is parsed; and
 * window.clickback.decorate(url) carries it on as a URL parameter (replacing one the URL
 * had; with another data-param, a `refid` or `clickid` the URL had too).
 * No dependencies, no requests, nothing sent anywhere.
 */
(function () {
  "use strict";

  var NAME = /^[A-Za-z0-9_-]{1,64}$/; // a cookie's name
  var PARAM = /^[^\s&=#?%]{1,50}$/; // an offer's RefID parameter (`s2s.clickid` too)
  var VALID = /^[A-Za-z0-9_-]{1,64}$/;
  var OTHER_SCHEME = /^(?!https?:)[a-z][a-z0-9+.-]*:/i; // mailto:, tel:, javascript:
  // a RefID as the tracker issues it: 36 characters of its sorted base64url alphabet, the
  // first 8 its time of issue in ms
  var ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
  var ISSUED = /^[-0-9A-Za-z_]{36}$/;

  var script = document.currentScript;
  if (!script) {
    var found = document.querySelectorAll("script[src*='refid.js']");
    script = found.length ? found[found.length - 1] : null;
  }
  var data = (script && script.dataset) || {};

  var param = PARAM.test(data.param || "") ? data.param : "refid";
  var cookieName = NAME.test(data.cookie || "") ? data.cookie : "clickback_refid";
  var domain = sharedDomain(String(data.domain || ""), window.location.hostname);
  var days = Number(data.days);
  if (!(days > 0 && days <= 3650)) {
    days = 30;
  }

  // The cookie's Domain: the one asked for, when this page's host is it or under it (a
  // browser drops a cookie set for another site's domain, and the RefID with it); else
  // none, and the cookie stays this host's.
  function sharedDomain(asked, host) {
    asked = asked.replace(/^\./, "").toLowerCase();
    host = host.toLowerCase();
    if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(asked)) {
      return "";
    }
    var under = host.length > asked.length &&
      host.substring(host.length - asked.length - 1) === "." + asked;
    return host === asked || under ? asked : "";
  }

  function valid(value) {
    return typeof value === "string" && VALID.test(value) ? value : null;
  }

  function fromUrl() {
    var params;
    try {
      params = new URLSearchParams(window.location.search);
    } catch (e) {
      return null;
    }
    var names = [param, "refid", "clickid"];
    for (var i = 0; i < names.length; i++) {
      var value = valid(params.get(names[i]));
      if (value) {
        return value;
      }
    }
    return null;
  }

  // The time a RefID was issued at, in ms (its first 8 characters, 6 bits each).
  function issuedMs(value) {
    var ms = 0;
    for (var i = 0; i < 8; i++) {
      ms = ms * 64 + ALPHABET.indexOf(value.charAt(i));
    }
    return ms;
  }

  // Whether a RefID of the tracker's shape was issued within the cookie's lifetime (the
  // offer's attribution window), with a day's leeway for clocks: one issued before is
  // past its window, and its conversion would be refused.
  function current(value) {
    var ms = issuedMs(value);
    var now = Date.now();
    return ms > now - (days + 1) * 86400000 && ms < now + 86400000;
  }

  // A RefID the offer's URL put in the path (`https://shop.example/landing/{refid}`): a
  // segment of a RefID's shape issued within the cookie's lifetime, so that no other
  // 36-character name is taken for one.
  function fromPath() {
    var segments = window.location.pathname.split("/");
    for (var i = 0; i < segments.length; i++) {
      var value = segments[i];
      if (ISSUED.test(value) && current(value)) {
        return value;
      }
    }
    return null;
  }

  function fromCookie() {
    var jar;
    try {
      jar = document.cookie; // throws where cookies are blocked (sandboxed frames)
    } catch (e) {
      return null;
    }
    var parts = jar ? jar.split(";") : [];
    var found = null;
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].replace(/^\s+/, "");
      if (part.indexOf(cookieName + "=") === 0) {
        var value = valid(part.substring(cookieName.length + 1));
        // with data-domain, this host's own cookie from before it was set may come too:
        // cookies of one path come oldest first (RFC 6265 5.4), so the last is the newest
        if (!domain) {
          return value;
        }
        found = value || found;
      }
    }
    return found;
  }

  // Seconds the cookie keeps a RefID: until its window ends, counted from when it was
  // issued (a minute at the least, for a clock behind); the whole lifetime for a RefID of
  // another shape, which carries no time.
  function maxAge(value) {
    var whole = Math.round(days * 86400);
    if (!ISSUED.test(value)) {
      return whole;
    }
    var left = Math.round((issuedMs(value) + days * 86400000 - Date.now()) / 1000);
    return Math.min(whole, Math.max(60, left));
  }

  function store(value) {
    var secure = window.location.protocol === "https:" ? "; Secure" : "";
    var cookie =
      cookieName + "=" + value + "; Max-Age=" + maxAge(value) +
      "; Path=/; SameSite=Lax" + secure;
    try {
      if (domain) {
        // this host's own cookie, from before data-domain was set, would be read first
        document.cookie = cookieName + "=; Max-Age=0; Path=/; SameSite=Lax" + secure;
        cookie += "; Domain=" + domain;
      }
      document.cookie = cookie;
      if (domain && fromCookie() !== value) {
        // the browser refused the domain (a public suffix such as co.uk): this host's own
        // cookie, rather than none at all
        document.cookie = cookie.replace("; Domain=" + domain, "");
      }
    } catch (e) {
      // cookies blocked: the hidden field and decorated links still carry the RefID
    }
  }

  // An older RefID in the URL than the one kept (an old tab, a bookmark, a landing URL
  // shared from another visit) does not replace it: the newer click's is the one that
  // converts. Told by the times both were issued at; a RefID of another shape replaces.
  function older(value, than) {
    return !!than && ISSUED.test(value) && ISSUED.test(than) && issuedMs(value) < issuedMs(than);
  }

  var urlRefid = fromUrl();
  if (urlRefid && ISSUED.test(urlRefid) && !current(urlRefid)) {
    urlRefid = null; // past its window (an old bookmark): what the cookie keeps stays
  }
  urlRefid = urlRefid || fromPath();
  if (urlRefid && older(urlRefid, fromCookie())) {
    urlRefid = null;
  }
  if (urlRefid) {
    store(urlRefid);
  }

  function refid() {
    return urlRefid || fromCookie();
  }

  function fill(root) {
    var value = refid();
    if (!value) {
      return 0;
    }
    var fields = (root || document).querySelectorAll("input"); // a fragment too
    var filled = 0;
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].name === param) {
        fields[i].value = value;
        filled++;
      }
    }
    return filled;
  }

  // The parameters decorate() replaces: the configured one and, when that is another
  // name, `refid` and `clickid` too (read as RefIDs from the URL as well), so that a URL
  // carries one RefID, under the configured name. With the default name a `clickid` is
  // left as written.
  var replaced = [encodeURIComponent(param)];
  if (param !== "refid") {
    replaced.push("refid", "clickid");
  }

  // Adds (or replaces) the RefID parameter, leaving the rest of the URL as written. A
  // place on this page (`#faq`) and a link that is no web page (`mailto:`, `tel:`) are
  // left as they are.
  function decorate(url) {
    var value = refid();
    if (!value || typeof url !== "string" || !url || url.charAt(0) === "#" ||
        OTHER_SCHEME.test(url)) {
      return url;
    }
    var hashAt = url.indexOf("#");
    var hash = hashAt < 0 ? "" : url.substring(hashAt);
    var rest = hashAt < 0 ? url : url.substring(0, hashAt);
    var queryAt = rest.indexOf("?");
    var base = queryAt < 0 ? rest : rest.substring(0, queryAt);
    var query = queryAt < 0 ? "" : rest.substring(queryAt + 1);
    var kept = [];
    var pairs = query ? query.split("&") : [];
    var key = encodeURIComponent(param);
    for (var i = 0; i < pairs.length; i++) {
      if (pairs[i] && replaced.indexOf(pairs[i].split("=")[0]) < 0) {
        kept.push(pairs[i]);
      }
    }
    kept.push(key + "=" + value);
    return base + "?" + kept.join("&") + hash;
  }

  window.clickback = { refid: refid, decorate: decorate, fill: fill };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      fill();
    });
  } else {
    fill();
  }
})();
