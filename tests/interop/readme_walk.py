#!/usr/bin/env python3
"""Walks README.md's "Use it from a client" steps with slixmpp, a client stack independent
of the Rust one the other end-to-end tests use (Poezio is built on it).

Started by tests/interop_slixmpp.rs against a real Prosody, a real InspIRCd and the gateway
(fake and irc bridges). Prints one line per step; exits 1 at the first step that fails,
saying what was expected and what came instead. Every wait is bounded.

    python3 tests/interop/readme_walk.py --jid alice@localhost --password pw \
        --host 127.0.0.1 --port 5222 --irc-server 127.0.0.1
"""

import argparse
import logging
import os
import asyncio
import sys
import uuid

try:
    import slixmpp
    from slixmpp.xmlstream import ET
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
except ImportError:
    print("slixmpp is not installed: python3 -m pip install slixmpp (.ci/run does)", file=sys.stderr)
    sys.exit(2)

FAKE = "fake.localhost"
IRC = "irc.localhost"
WAIT = 15.0

NS = {
    "c": "jabber:client",
    "disco": "http://jabber.org/protocol/disco#info",
    "items": "http://jabber.org/protocol/disco#items",
    "reg": "jabber:iq:register",
    "x": "jabber:x:data",
    "muc": "http://jabber.org/protocol/muc#user",
    "sid": "urn:xmpp:sid:0",
    "mam": "urn:xmpp:mam:2",
    "fwd": "urn:xmpp:forward:0",
    "cmd": "http://jabber.org/protocol/commands",
    "gw": "jabber:iq:gateway",
}


class StepFailed(Exception):
    pass


class Walker(slixmpp.ClientXMPP):
    """A client that records every message and presence it receives, to wait on them."""

    def __init__(self, jid, password):
        # The test's Prosody speaks plaintext on loopback (no certificate to check).
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {"unencrypted_plain": True}})
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.enable_plaintext = True
        self.received = []
        self.arrived = asyncio.Event()
        for kind in ("message", "presence"):
            self.register_handler(
                Callback(f"spy {kind}", MatchXPath("{jabber:client}%s" % kind), self._spy)
            )

    def _spy(self, stanza):
        self.received.append(stanza.xml)
        self.arrived.set()

    async def expect(self, what, pred, timeout=WAIT):
        """Waits for a received stanza (as an ElementTree element) that matches `pred`,
        taking it out of what was received."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for i, el in enumerate(self.received):
                if pred(el):
                    return self.received.pop(i)
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                seen = "\n  ".join(ET.tostring(e, encoding="unicode")[:300] for e in self.received[-8:])
                raise StepFailed(f"no {what} within {timeout} s; last received:\n  {seen}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def query(self, type_, to, payload_xml):
        """Sends an IQ with `payload_xml` and returns the answer's element (an error
        answer raises StepFailed with its condition)."""
        iq = self.Iq()
        iq["type"] = type_
        iq["to"] = to
        iq["id"] = uuid.uuid4().hex
        iq.append(ET.fromstring(payload_xml))
        try:
            answer = await iq.send(timeout=WAIT)
        except slixmpp.exceptions.IqError as e:
            raise StepFailed(f"{to} answered an error: {ET.tostring(e.iq.xml, encoding='unicode')}")
        except slixmpp.exceptions.IqTimeout:
            raise StepFailed(f"{to} did not answer within {WAIT} s")
        return answer.xml

    def send_xml(self, xml):
        self.send_raw(xml)


def body(el):
    b = el.find("c:body", NS)
    return b.text if b is not None else None


def frm(el):
    return el.get("from") or ""


def form_xml(fields):
    inner = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return f"<x xmlns='jabber:x:data' type='submit'>{inner}</x>"


async def walk(c, irc_server):
    me = c.boundjid.bare

    # README 1. Register: discover the gateway, read its form, submit it.
    info = await c.query("get", FAKE, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    identity = info.find(".//disco:identity", NS)
    features = {f.get("var") for f in info.findall(".//disco:feature", NS)}
    if identity is None or identity.get("category") != "gateway" or "jabber:iq:register" not in features:
        raise StepFailed(f"{FAKE} is not a gateway offering registration: {ET.tostring(info, encoding='unicode')}")
    print("ok 1a: the gateway is discovered, with registration")
    form = await c.query("get", FAKE, "<query xmlns='jabber:iq:register'/>")
    fields = {f.get("var") for f in form.findall(".//x:field", NS)}
    if not {"username", "password"} <= fields:
        raise StepFailed(f"the registration form lacks username/password: {fields}")
    await c.query(
        "set",
        FAKE,
        "<query xmlns='jabber:iq:register'>" + form_xml({"username": "walker", "password": "pw"}) + "</query>",
    )
    print("ok 1b: registered in-band (XEP-0077)")
    await c.expect(
        "the gateway's subscription request",
        lambda el: el.tag == "{jabber:client}presence" and frm(el) == FAKE and el.get("type") == "subscribe",
    )
    print("ok 1c: the gateway asks to be added to the roster")

    # README 2. Chat, and the XEP-0100 prompt.
    c.send_xml(f"<message xmlns='jabber:client' type='chat' to='alice@{FAKE}' id='r2'><body>hello from slixmpp</body></message>")
    await c.expect(
        "alice's answer",
        lambda el: frm(el).startswith(f"alice@{FAKE}") and body(el) == "alice: hello from slixmpp",
    )
    print("ok 2a: alice answers")
    prompt = await c.query("set", FAKE, "<query xmlns='jabber:iq:gateway'><prompt>Bob</prompt></query>")
    jid = prompt.find(".//gw:jid", NS)
    if jid is None or jid.text != f"bob@{FAKE}":
        raise StepFailed(f"the XEP-0100 prompt gave {ET.tostring(prompt, encoding='unicode')}")
    print("ok 2b: the XEP-0100 prompt turns 'Bob' into bob@fake.localhost")

    # README 3. A room: the list, joining, talking, the archive.
    items = await c.query("get", FAKE, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    rooms = {i.get("jid") for i in items.findall(".//items:item", NS)}
    room = f"#lobby@{FAKE}"
    if room not in rooms:
        raise StepFailed(f"the room list lacks {room}: {rooms}")
    print("ok 3a: browsing the gateway lists #lobby")
    c.send_xml(f"<presence xmlns='jabber:client' to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await c.expect(
        "the self-presence (110)",
        lambda el: frm(el) == f"{room}/al"
        and any(s.get("code") == "110" for s in el.findall(".//muc:status", NS)),
    )
    await c.expect("the subject", lambda el: frm(el) == room and el.find("c:subject", NS) is not None)
    print("ok 3b: joined #lobby as al")
    c.send_xml(f"<message xmlns='jabber:client' type='groupchat' to='{room}' id='r3'><body>hi room</body></message>")
    mine = await c.expect(
        "my message reflected",
        lambda el: frm(el) == f"{room}/al" and body(el) == "hi room",
    )
    sid = mine.find("sid:stanza-id", NS)
    if mine.get("id") != "r3" or sid is None or sid.get("by") != room:
        raise StepFailed(f"the reflection lacks its id or stanza-id: {ET.tostring(mine, encoding='unicode')}")
    await c.expect("bot's answer", lambda el: frm(el) == f"{room}/bot" and body(el) == "bot heard: hi room")
    print("ok 3c: the message is reflected with its stanza-id; bot answers")
    qid = uuid.uuid4().hex
    await c.query("set", room, f"<query xmlns='urn:xmpp:mam:2' queryid='{qid}'/>")
    archived = await c.expect(
        "the archive's copy (MAM)",
        lambda el: any(
            r.get("queryid") == qid and r.get("id") == sid.get("id") for r in el.findall("mam:result", NS)
        ),
    )
    del archived
    print("ok 3d: the room's archive (XEP-0313) holds the message")

    # README 6 and "Profanity and Poezio": the commands, and the login command.
    listed = await c.query(
        "get", FAKE, "<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/>"
    )
    nodes = {i.get("node") for i in listed.findall(".//items:item", NS)}
    if not {"login", "status"} <= nodes:
        raise StepFailed(f"the command list lacks login/status: {nodes}")
    step = await c.query("set", FAKE, "<command xmlns='http://jabber.org/protocol/commands' node='login' action='execute'/>")
    cmd = step if step.tag.endswith("command") else step.find("cmd:command", NS)
    session = cmd.get("sessionid")
    done = await c.query(
        "set",
        FAKE,
        f"<command xmlns='http://jabber.org/protocol/commands' node='login' sessionid='{session}' action='complete'>"
        + form_xml({"username": "walker", "password": "", "nick": "walky"})
        + "</command>",
    )
    cmd = done if done.tag.endswith("command") else done.find("cmd:command", NS)
    if cmd.get("status") != "completed":
        raise StepFailed(f"the login command did not complete: {ET.tostring(done, encoding='unicode')}")
    print("ok 6: the command list has login; the login command changes the login (secret left empty is kept)")

    # README 4. IRC: a channel as a room, and raw commands to the server's JID.
    chan = f"#readme%{irc_server}@{IRC}"
    c.send_xml(f"<presence xmlns='jabber:client' to='{chan}/walker'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await c.expect(
        "the IRC channel's self-presence (110)",
        lambda el: frm(el) == f"{chan}/walker"
        and any(s.get("code") == "110" for s in el.findall(".//muc:status", NS)),
        timeout=30,
    )
    c.send_xml(f"<message xmlns='jabber:client' type='groupchat' to='{chan}' id='r4'><body>hello irc</body></message>")
    await c.expect("the IRC reflection", lambda el: frm(el) == f"{chan}/walker" and body(el) == "hello irc")
    print("ok 4a: joined an IRC channel and talked in it")
    server_jid = f"{irc_server}@{IRC}"
    c.send_xml(f"<message xmlns='jabber:client' type='chat' to='{server_jid}'><body>WHOIS walker</body></message>")
    await c.expect(
        "the WHOIS answer from the server's JID",
        lambda el: frm(el) == server_jid and (body(el) or "").startswith("walker is "),
    )
    print("ok 4b: a raw command to the server's JID is answered from it")
    print(f"all README steps passed for {me}")


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--irc-server", default="127.0.0.1")
    args = p.parse_args()
    logging.basicConfig(level=os.environ.get("WALK_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    c = Walker(args.jid, args.password)
    started = asyncio.get_running_loop().create_future()
    c.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    c.add_event_handler("failed_auth", lambda _: started.done() or started.set_exception(StepFailed("authentication failed")))
    c.connect(args.host, args.port)
    try:
        await asyncio.wait_for(started, WAIT)
        c.send_presence()
        await c.get_roster()
        await walk(c, args.irc_server)
        code = 0
    except asyncio.TimeoutError:
        print(f"FAILED: no session within {WAIT} s (connection or authentication)", file=sys.stderr)
        code = 1
    except StepFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        code = 1
    c.disconnect()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
