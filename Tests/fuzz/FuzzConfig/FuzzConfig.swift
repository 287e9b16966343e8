import AmpConfig
import AmpTuning

/// libFuzzer target: the config loader (TOML, then every key's type and range checks) and the
/// environment layer, on any bytes. A ConfigError is fine; a crash is not.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? ConfigLoader.parseFile(text, path: "/fuzz/.amp/config.toml", baseDirectory: "/fuzz")
    // The same text as environment values, split at the first NUL-free separator.
    let parts = text.split(separator: "\n", maxSplits: 8).map(String.init)
    let names = ["AMP_PG_START_TIMEOUT", "AMP_PG_STOP_TIMEOUT", "AMP_PG_MEMORY", "AMP_PG_CPUS", "AMP_PG_PROFILE",
                 "AMP_PG_TEMPLATE_CACHE", "AMP_PG_INITDB_ARGS", "AMP_PG_BIN_DIR", "AMP_PG_PARAM_x"]
    var env: [String: String] = [:]
    for (name, value) in zip(names, parts) { env[name] = value }
    _ = try? ConfigLoader.environmentLayer(env, workingDirectory: "/fuzz")
    _ = parseDuration(text)
    _ = MemorySize(parsing: text)
    return 0
}
