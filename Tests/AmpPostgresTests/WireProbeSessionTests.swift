import AmpPostgres
import Testing

/// The probe's protocol handling, without a server: what PostgreSQL sends, byte for byte.
@Suite("WireProbeSession (pure)")
struct WireProbeSessionTests {
    func message(_ type: Character, _ payload: [UInt8]) -> [UInt8] {
        let n = UInt32(payload.count + 4)
        return [UInt8(ascii: type.unicodeScalars.first ?? "?"), UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + payload
    }
    func int32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
    var authOK: [UInt8] { message("R", int32(0)) }
    var ready: [UInt8] { message("Z", [UInt8(ascii: "I")]) }
    let terminate: [UInt8] = [UInt8(ascii: "X"), 0, 0, 0, 4]

    @Test("startup message: protocol 3.0, user, database, application_name")
    func startup() {
        let s = WireProbeSession(user: "me", database: "postgres", query: nil)
        #expect(Array(s.startup[4..<8]) == [0, 3, 0, 0])
        #expect(Int(s.startup[3]) + Int(s.startup[2]) << 8 == s.startup.count)
        #expect(String(decoding: s.startup, as: UTF8.self).contains("user\u{0}me\u{0}database\u{0}postgres\u{0}application_name\u{0}ampd\u{0}\u{0}"))
    }

    @Test("trust login without a query: ok, and Terminate is sent")
    func loginOnly() {
        var s = WireProbeSession(user: "me", database: "postgres", query: nil)
        let step = s.received(authOK + message("S", Array("server_version\u{0}15.4\u{0}".utf8)) + ready)
        #expect(step.outcome == .ok(nil))
        #expect(step.send == terminate)
        #expect(s.received(ready) == .init(), "nothing after the outcome")
    }

    @Test("a query: sent after ReadyForQuery; its first value is the answer")
    func query() {
        var s = WireProbeSession(user: "me", database: "postgres", query: "SHOW server_version")
        let first = s.received(authOK + ready)
        #expect(first.outcome == nil)
        #expect(first.send.first == UInt8(ascii: "Q") && String(decoding: first.send, as: UTF8.self).contains("SHOW server_version"))
        let row = message("D", [0, 1] + int32(4) + Array("15.4".utf8))
        let done = s.received(message("T", [0, 0]) + row + message("C", Array("SHOW\u{0}".utf8)) + ready)
        #expect(done.outcome == .ok("15.4"))
        #expect(done.send == terminate)
    }

    @Test("byte by byte: the same outcome (truncated messages wait for the rest)")
    func truncated() {
        var s = WireProbeSession(user: "me", database: "postgres", query: nil)
        let bytes = authOK + ready
        var outcome: WireProbe.Outcome?
        for b in bytes.dropLast() {
            #expect(s.received([b]).outcome == nil)
        }
        outcome = s.received([bytes[bytes.count - 1]]).outcome
        #expect(outcome == .ok(nil))
    }

    @Test("57P03 while starting: rejected with SQLSTATE and message")
    func cannotConnectNow() {
        var s = WireProbeSession(user: "me", database: "postgres", query: nil)
        let fields = Array("SFATAL\u{0}C57P03\u{0}Mthe database system is starting up\u{0}\u{0}".utf8)
        #expect(s.received(message("E", fields)).outcome == .rejected(sqlState: "57P03", message: "the database system is starting up"))
    }

    @Test("a password request (MD5, SCRAM): authentication required")
    func password() {
        var md5 = WireProbeSession(user: "me", database: "postgres", query: nil)
        #expect(md5.received(message("R", int32(5) + [1, 2, 3, 4])).outcome == .authenticationRequired)
        var scram = WireProbeSession(user: "me", database: "postgres", query: nil)
        #expect(scram.received(message("R", int32(10) + Array("SCRAM-SHA-256\u{0}\u{0}".utf8))).outcome == .authenticationRequired)
    }

    @Test("malformed answers end the probe, never a crash", arguments: [
        [UInt8(ascii: "R"), 0, 0, 0, 2] as [UInt8],              // length below 4
        [UInt8(ascii: "D"), 0x7f, 0xff, 0xff, 0xff],               // oversized
        [UInt8(ascii: "R"), 0, 0, 0, 5, 0],                         // short authentication message
    ])
    func malformed(bytes: [UInt8]) {
        var s = WireProbeSession(user: "me", database: "postgres", query: nil)
        guard case .noResponse(let why)? = s.received(bytes).outcome else {
            Issue.record("no outcome for \(bytes)")
            return
        }
        #expect(why.contains("malformed"))
    }

    @Test("a DataRow with a bad value length is ignored, not read past its end")
    func badDataRow() {
        var s = WireProbeSession(user: "me", database: "postgres", query: "SELECT 1")
        _ = s.received(authOK + ready)
        let row = message("D", [0, 1] + int32(1000) + Array("1".utf8))
        #expect(s.received(row + ready).outcome == .ok(nil))
    }
}
