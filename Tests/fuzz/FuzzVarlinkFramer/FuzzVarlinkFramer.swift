import Varlink

/// libFuzzer target: a connection's framer and state machine fed arbitrary bytes in
/// arbitrary chunks (the first byte picks the chunk size), as a hostile client would send them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVarlinkFramer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let chunk = Int(first % 64) + 1
    let idl = """
        interface io.fuzz.X
        type T (a: int, b: ?string, c: []bool, d: [string]float)
        method M(t: T, n: ?int) -> (r: string)
        method S() -> (x: int)
        error E (why: string)
        """
    guard let interface = try? VarlinkInterface(parsing: idl) else { fatalError("the fuzz IDL does not parse") }
    let service = VarlinkServiceDescription(
        vendor: "fuzz", product: "fuzz", version: "0", url: "", interfaces: [interface], moreRequired: ["io.fuzz.X.S"])
    var machine = VarlinkConnectionStateMachine(service: service, permitted: first & 0x80 == 0, maxMessageSize: 4096, maxQueued: 4)
    var framer = VarlinkFramer(maxMessageSize: 4096)
    var index = 1
    while index < bytes.count {
        let piece = bytes[index..<min(bytes.count, index + chunk)]
        _ = try? framer.feed(piece)
        for action in machine.handle(.received(Array(piece))) {
            if case .dispatch = action { _ = machine.handle(.replied(VarlinkReply(parameters: ["r": .string("ok")]))) }
            if case .close = action { return 0 }
        }
        index += chunk
    }
    _ = machine.handle(.peerClosed)
    return 0
}
