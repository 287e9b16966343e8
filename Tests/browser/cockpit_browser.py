#!/usr/bin/env python3
"""amp's Cockpit page in a real browser (Debian's chromium and chromedriver through Selenium),
served by a real cockpit-ws in local-session mode for the test account, against projects of
the installed .deb under the account's user manager. Run by Tests/harness/deb-test.sh as the
account:

    cockpit_browser.py --running NAME --running NAME --stopped NAME --shots DIR

Checks, with a screenshot of each step in DIR (kept by the run, not committed):
  1. the project list shows the running projects with their sizes and the stopped one;
  2. a chart of a project has points after a pgbench run;
  3. starting the stopped project from its page makes it answer psql;
  4. a snapshot taken from the page is in `ampctl snapshot list`;
  5. the page of a project whose ampd was SIGKILLed shows the restart.
Exits 0 when all pass; otherwise prints the failed check and exits 1.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def ampctl(*args, check=True):
    r = subprocess.run(["ampctl", *args], capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))
    if check and r.returncode != 0:
        raise RuntimeError(f"ampctl {' '.join(args)}: {r.stderr.strip()}")
    return r

def fail(message):
    print(f"cockpit-browser: FAILED: {message}", file=sys.stderr)
    sys.exit(1)

def say(message):
    print(f"cockpit-browser: {message}", file=sys.stderr)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--running", action="append", required=True)
    ap.add_argument("--stopped", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--pgbench", default="/usr/lib/postgresql/15/bin/pgbench")
    args = ap.parse_args()
    os.makedirs(args.shots, exist_ok=True)

    port = free_port()
    ws = subprocess.Popen(["/usr/lib/cockpit/cockpit-ws", "--no-tls", "--address", "127.0.0.1", "--port", str(port),
                           "--local-session=cockpit-bridge"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          start_new_session=True)
    driver = None
    step = [0]

    def shot(name):
        step[0] += 1
        path = os.path.join(args.shots, f"{step[0]:02d}-{name}.png")
        driver.switch_to.default_content()
        driver.save_screenshot(path)
        enter_frame()
        say(f"screenshot {path}")

    def enter_frame(timeout=30):
        driver.switch_to.default_content()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for frame in driver.find_elements(By.TAG_NAME, "iframe"):
                name = frame.get_attribute("name") or ""
                if name.endswith("/amp") or "/amp" in (frame.get_attribute("src") or ""):
                    driver.switch_to.frame(frame)
                    return
            time.sleep(0.2)
        fail("the shell shows no frame for the amp page (is /usr/share/cockpit/amp installed?)")

    def wait(what, condition, timeout=60):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except Exception as e:  # noqa: BLE001 - the page is re-rendering; look again
                last = e
            time.sleep(0.25)
        shot("failed-" + what.replace(" ", "-")[:40])
        fail(f"{what} (after {timeout} s){'; last error: ' + str(last) if last else ''}")

    def go(fragment):
        driver.switch_to.default_content()
        driver.get(f"http://127.0.0.1:{port}/amp#/{fragment}")
        enter_frame()
        heading = fragment or "PostgreSQL projects"
        wait(f"the page of {heading}", lambda: driver.find_element(By.CSS_SELECTOR, "h1").text == heading)

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        options = Options()
        options.binary_location = "/usr/bin/chromium"
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
            options.add_argument(a)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)

        # 1. The list: the running projects with sizes, the stopped one.
        go("")
        def listed():
            rows = driver.find_elements(By.CSS_SELECTOR, "#amp-projects tbody tr")
            seen = {}
            for r in rows:
                name = r.find_element(By.CSS_SELECTOR, "a.amp-project").text
                seen[name] = (r.find_element(By.CSS_SELECTOR, "[data-state]").get_attribute("data-state"),
                              r.find_element(By.CSS_SELECTOR, ".amp-size").text)
            ok = all(seen.get(n, ("", ""))[0] == "ready" and seen[n][1].endswith("B") for n in args.running)
            return seen if ok and seen.get(args.stopped, ("", ""))[0] == "inactive" else None
        seen = wait("the list shows the running projects with sizes and the stopped one", listed)
        say(f"listed: {seen}")
        shot("list")

        # 2. A chart has points after pgbench.
        busy = args.running[0]
        url = ampctl("url", busy).stdout.strip()
        subprocess.run([args.pgbench, "-i", "-q", "-s", "1", url], check=True, capture_output=True)
        subprocess.run([args.pgbench, "-n", "-c", "2", "-T", "12", url], check=True, capture_output=True)
        go(busy)
        points = wait("the transactions chart has points after pgbench",
                      lambda: int(driver.find_element(By.ID, "amp-chart-commits").get_attribute("data-points")) >= 2, timeout=60)
        say(f"chart points: {points}")
        shot("chart")

        # 3. Start the stopped project from its page; it answers psql.
        go(args.stopped)
        wait("the stopped project's page offers Start", lambda: driver.find_element(By.ID, "amp-start").is_enabled())
        driver.find_element(By.ID, "amp-start").click()
        wait("the page says the project started", lambda: f"{args.stopped} started" in driver.find_element(By.CSS_SELECTOR, ".amp-alert[data-kind=success]").text, timeout=90)
        started_url = ampctl("url", args.stopped).stdout.strip()
        r = subprocess.run(["psql", started_url, "-Atc", "SELECT 'answers'"], capture_output=True, text=True)
        if r.stdout.strip() != "answers":
            fail(f"psql after Start: {r.stderr.strip()}")
        shot("started")

        # 4. A snapshot from the page is in ampctl snapshot list.
        other = args.running[-1]
        go(other)
        wait("the Take snapshot button", lambda: driver.find_element(By.ID, "amp-snapshot").is_enabled())
        driver.find_element(By.ID, "amp-snapshot").click()
        text = wait("the page says the snapshot was taken",
                    lambda: [t for t in [driver.find_element(By.CSS_SELECTOR, ".amp-alert[data-kind=success]").text] if t.startswith("Snapshot ")][0], timeout=90)
        name = text.split("Snapshot ", 1)[1].split(" ", 1)[0]
        listed_snapshots = json.loads(ampctl("snapshot", "list", "--project", other, "--json").stdout)
        if name not in [s["name"] for s in listed_snapshots]:
            fail(f"snapshot {name} is not in ampctl snapshot list: {listed_snapshots}")
        wait("the snapshot is in the page's list", lambda: name in [e.get_attribute("textContent") for e in driver.find_elements(By.CSS_SELECTOR, ".amp-snapshot")])
        shot("snapshot")

        # 5. SIGKILL its ampd: the unit restarts it and the page shows the restart.
        main_pid = int(subprocess.run(["systemctl", "--user", "show", "-P", "MainPID", f"amp@{other}.service"], capture_output=True, text=True).stdout.strip())
        os.kill(main_pid, signal.SIGKILL)
        wait("the page shows the restart", lambda: driver.find_element(By.ID, "amp-restarts").get_attribute("textContent").strip() not in ("", "0", "–"), timeout=90)
        shot("restarted")
        say("all checks passed")
    finally:
        if driver is not None:
            driver.quit()
        # cockpit-ws starts a bridge and, under it, a dbus-daemon and an ssh-agent: end the group.
        try:
            os.killpg(ws.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            ws.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(ws.pid, signal.SIGKILL)
            ws.wait()

if __name__ == "__main__":
    main()
