import AmpConfig
import SystemSupport

/// libFuzzer target: the TOML parser on any bytes (strict UTF-8 first, as config.toml is read).
/// Any input must end in a value or a TOMLError: never a crash, a hang or unbounded recursion.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTOML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard case .success(let text) = decodeUTF8Strictly(bytes) else { return 0 }
    _ = try? parseTOML(text)
    return 0
}
