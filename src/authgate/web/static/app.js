// authgate Settings UI: small conveniences on top of forms that work without JavaScript.
"use strict";

// UTMStack's messages for allowed-IP entries.
const MESSAGES = {
  address: "Invalid IP address format",
  cidr: "Invalid CIDR format",
  duplicate: "This IP is already added",
};

function ipv4ToNumber(text) {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255 || (part.length > 1 && part[0] === "0")) return null;
    value = value * 256 + Number(part);
  }
  return value;
}

function ipv6ToBigInt(text) {
  let head = text;
  let tail = "";
  if (text.includes("::")) {
    if (text.indexOf("::") !== text.lastIndexOf("::")) return null;
    [head, tail] = text.split("::");
  }
  const groups = (part) => (part === "" ? [] : part.split(":"));
  let left = groups(head);
  let right = groups(tail);
  const last = right.length ? right : left;
  if (last.length && last[last.length - 1].includes(".")) {
    const v4 = ipv4ToNumber(last.pop());
    if (v4 === null) return null;
    last.push((v4 >>> 16).toString(16), (v4 & 0xffff).toString(16));
  }
  const missing = 8 - left.length - right.length;
  if (text.includes("::") ? missing < 1 : missing !== 0) return null;
  const all = [...left, ...Array(text.includes("::") ? missing : 0).fill("0"), ...right];
  let value = 0n;
  for (const group of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return null;
    value = (value << 16n) + BigInt(parseInt(group, 16));
  }
  return value;
}

// Returns {key, error}: key identifies the network (for duplicates), error a message.
function checkEntry(raw) {
  const text = raw.trim();
  const [address, prefix, extra] = text.split("/");
  if (extra !== undefined) return { error: MESSAGES.cidr };
  const v4 = ipv4ToNumber(address);
  const v6 = v4 === null ? ipv6ToBigInt(address) : null;
  if (prefix === undefined) {
    if (v4 !== null) return { key: `4:${v4}/32` };
    if (v6 !== null) return { key: `6:${v6}/128` };
    return { error: MESSAGES.address };
  }
  if (!/^\d{1,3}$/.test(prefix)) return { error: MESSAGES.cidr };
  const bits = Number(prefix);
  if (v4 !== null) {
    if (bits > 32) return { error: MESSAGES.cidr };
    // Host bits set mean the network (10.0.0.5/24 is 10.0.0.0/24), as the server reads it.
    const host = bits === 32 ? 0 : v4 % 2 ** (32 - bits);
    return { key: `4:${v4 - host}/${bits}` };
  }
  if (v6 !== null) {
    if (bits > 128) return { error: MESSAGES.cidr };
    const host = bits === 128 ? 0n : v6 % (1n << BigInt(128 - bits));
    return { key: `6:${v6 - host}/${bits}` };
  }
  return { error: MESSAGES.cidr };
}

// Replaces the allowed-IP textarea by a list of inputs with add/remove buttons and
// inline validation; the textarea stays the form field, kept in sync.
function ipEditor(textarea) {
  const list = document.createElement("ul");
  list.className = "ip-list";
  const add = document.createElement("button");
  add.type = "button";
  add.textContent = "Add IP or range";
  add.className = "add-ip";
  textarea.hidden = true;
  textarea.after(list, add);
  // "one per line" describes the textarea, not the list that replaces it.
  textarea.form.querySelectorAll("[data-textarea-hint]").forEach((hint) => hint.remove());

  function sync() {
    const inputs = [...list.querySelectorAll("input")];
    const seen = new Set();
    let invalid = false;
    for (const input of inputs) {
      const row = input.closest("li");
      const message = row.querySelector(".field-error");
      let error = "";
      if (input.value.trim() !== "") {
        const result = checkEntry(input.value);
        if (result.error) error = result.error;
        else if (seen.has(result.key)) error = MESSAGES.duplicate;
        else seen.add(result.key);
      }
      message.textContent = error;
      message.hidden = !error;
      input.setAttribute("aria-invalid", error ? "true" : "false");
      invalid = invalid || Boolean(error);
    }
    textarea.value = inputs.map((input) => input.value.trim()).filter(Boolean).join("\n");
    return !invalid;
  }

  // Rows are numbered by position, and renumbered when one is removed: labels say
  // "entry 2 of the list" as it is now, and ids stay unique (a counter, not the count).
  let made = 0;
  // The textarea's hint (and the server's error) describe every row's input too.
  const described = textarea.getAttribute("aria-describedby") || "";

  function renumber() {
    [...list.children].forEach((row, position) => {
      row.querySelector("input").setAttribute("aria-label", `Allowed IP or range ${position + 1}`);
      row.querySelector("button").setAttribute("aria-label", `Remove entry ${position + 1}`);
    });
  }

  function addRow(value) {
    made += 1;
    const row = document.createElement("li");
    const input = document.createElement("input");
    input.value = value;
    input.id = `${textarea.id}-${made}`;
    input.placeholder = "e.g. 10.0.0.0/8";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => { row.remove(); renumber(); sync(); });
    const message = document.createElement("p");
    message.className = "field-error";
    message.id = `${input.id}-error`;
    message.hidden = true;
    message.setAttribute("role", "alert");
    input.setAttribute("aria-describedby", `${message.id} ${described}`.trim());
    input.addEventListener("input", sync);
    row.append(input, remove, message);
    list.append(row);
    renumber();
    return input;
  }

  for (const line of textarea.value.split("\n")) if (line.trim()) addRow(line.trim());
  add.addEventListener("click", () => addRow("").focus());
  textarea.form.addEventListener("submit", (event) => {
    if (!sync()) {
      event.preventDefault();
      list.querySelector('[aria-invalid="true"]').focus();
    }
  });
  sync();
}

function expiryPresets(button) {
  button.addEventListener("click", () => {
    const input = button.closest("form").querySelector('input[type="date"]');
    const date = new Date();
    date.setUTCDate(date.getUTCDate() + Number(button.dataset.expiryDays));
    input.value = date.toISOString().slice(0, 10);
  });
}

function copyButton(button) {
  button.addEventListener("click", async () => {
    const text = document.querySelector(button.dataset.copy).textContent.trim();
    const status = button.parentElement.querySelector(".copied");
    try {
      await navigator.clipboard.writeText(text);
      status.textContent = "Copied to the clipboard.";
    } catch {
      status.textContent = "Copy failed: select the key and copy it by hand.";
    }
  });
}

function confirmSubmit(form) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

// A one-time code field submits its form once six digits are in (typed or pasted).
function autoSubmit(input) {
  input.addEventListener("input", () => {
    if (/^\d{6}$/.test(input.value) && input.form) input.form.requestSubmit();
  });
}

// A link to a folded <details> (the create form) unfolds it.
function openTarget(link) {
  link.addEventListener("click", (event) => {
    const target = document.getElementById(link.dataset.open);
    if (target && target.tagName === "DETAILS") {
      event.preventDefault();
      target.open = true;
      target.scrollIntoView();
      target.querySelector("input:not([type=hidden])")?.focus();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-open]").forEach(openTarget);
  if (window.location.hash === "#create") {
    const create = document.getElementById("create");
    if (create && create.tagName === "DETAILS") create.open = true;
  }
  document.querySelectorAll("textarea[data-ip-editor]").forEach(ipEditor);
  document.querySelectorAll("[data-expiry-days]").forEach(expiryPresets);
  document.querySelectorAll("[data-copy]").forEach(copyButton);
  document.querySelectorAll("form[data-confirm]").forEach(confirmSubmit);
  document.querySelectorAll("input[data-autosubmit]").forEach(autoSubmit);
});
