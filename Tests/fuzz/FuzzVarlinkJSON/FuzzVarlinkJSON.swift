import Varlink

/// libFuzzer target: the strict JSON parser and varlink call/reply decoding on any bytes;
/// what parses must serialise and parse back to the same value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVarlinkJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let value = try? JSONParser.parse(bytes) else { return 0 }
    guard let again = try? JSONParser.parse(value.serialized), again == value else {
        fatalError("JSON round trip changed the value: \(value.serialized)")
    }
    _ = try? VarlinkCall.decode(value)
    _ = try? VarlinkReply.decode(value)
    return 0
}
