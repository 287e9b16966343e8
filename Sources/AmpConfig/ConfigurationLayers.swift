#if canImport(Glibc)
import Glibc
#endif

/// The configuration layers as read, kept apart so every setting can name its source.
public struct ConfigurationLayers: Sendable {
    public var file: SettingsLayer?
    public var filePath: String
    public var environment: SettingsLayer
    public var commandLine: SettingsLayer
    public var settings: AmpSettings

    /// Layers as given (tests, and callers that read the files themselves).
    public init(file: SettingsLayer?, filePath: String, environment: SettingsLayer, commandLine: SettingsLayer, settings: AmpSettings) {
        self.file = file
        self.filePath = filePath
        self.environment = environment
        self.commandLine = commandLine
        self.settings = settings
    }

    /// Reads config.toml (if any), the environment and the command line; nothing is touched.
    public static func load(ampDir: AmpDirectory, environment: [String: String], workingDirectory: String,
                     commandLine: SettingsLayer = SettingsLayer(), warn: (String) -> Void) throws(ConfigError) -> ConfigurationLayers {
        var settings = AmpSettings()
        var file: SettingsLayer?
        if let (layer, warnings) = try ConfigLoader.readFile(path: ampDir.configFile, baseDirectory: ampDir.base) {
            for w in warnings { warn(w) }
            settings.apply(layer)
            file = layer
        }
        let env = try ConfigLoader.environmentLayer(environment, workingDirectory: workingDirectory)
        settings.apply(env)
        settings.apply(commandLine)
        let layers = ConfigurationLayers(file: file, filePath: ampDir.configFile, environment: env, commandLine: commandLine, settings: settings)
        try layers.checkNetwork()
        return layers
    }

    /// The network settings together: a listen address others can reach needs TLS, TLS files
    /// come in pairs, and an external server has no local listener.
    public func checkNetwork() throws(ConfigError) {
        let s = settings
        if let listen = s.listen {
            let source = self.source(of: .listen) ?? "listen"
            if s.externalURL != nil {
                throw ConfigError(.invalidValue, "\(source) = \(listen): this project uses an external server ([postgres] url in \(filePath)), so there is no local cluster to listen; remove one of the two", key: "listen")
            }
            if !listen.isLoopback && !s.tls {
                throw ConfigError(
                    .invalidValue,
                    "\(source) = \(listen) can be reached from other machines, so it needs TLS: add `tls = true` to [postgres] in \(filePath) (a certificate is generated, or give tls_cert and tls_key), or listen on 127.0.0.1",
                    key: "listen")
            }
        }
        if s.poolEnabled, s.externalURL != nil {
            throw ConfigError(.invalidValue, "[pool] enabled: this project uses an external server ([postgres] url in \(filePath)); amp pools only a cluster it runs: remove one of the two", key: "enabled")
        }
        if let listen = s.poolListen {
            let source = self.source(of: .poolListen) ?? "[pool] listen"
            if !s.poolEnabled {
                throw ConfigError(.invalidValue, "\(source) = \(listen) is set but the pool is off: add `enabled = true` to [pool] in \(filePath), or remove listen", key: "listen")
            }
            if !listen.isLoopback && !s.tls {
                throw ConfigError(
                    .invalidValue,
                    "\(source) = \(listen) can be reached from other machines, so it needs TLS: add `tls = true` to [postgres] in \(filePath) (a certificate is generated, or give tls_cert and tls_key), or listen on 127.0.0.1",
                    key: "listen")
            }
            if case .address(_, let port) = listen, case .address(_, let pgPort)? = s.listen, port == pgPort {
                throw ConfigError(.invalidValue, "\(source) = \(listen) takes PostgreSQL's own port \(pgPort) ([postgres] listen); give the pool another port", key: "listen")
            }
        }
        if (s.tlsCertificate == nil) != (s.tlsKey == nil) {
            throw ConfigError(.invalidValue, "\(filePath): tls_cert and tls_key go together; give both, or neither to have a certificate generated", key: "tls_cert")
        }
    }

    /// The layers, highest precedence first.
    public enum Layer: Sendable, Equatable {
        case commandLine, environment, file
    }

    /// Which layer set `setting` last (command line > environment > file); nil: the default.
    public func layer(of setting: Setting) -> Layer? {
        if setting.isSet(in: commandLine) { return .commandLine }
        if setting.isSet(in: environment) { return .environment }
        if let file, setting.isSet(in: file) { return .file }
        return nil
    }

    /// Where `setting` was set, as messages name it: its flag, its variable, or
    /// `FILE key`; nil: the default.
    public func source(of setting: Setting) -> String? {
        switch layer(of: setting) {
        case .commandLine?: setting.flag ?? setting.key
        case .environment?: setting.variable ?? setting.key
        case .file?: "\(filePath) \(setting.key)"
        case nil: nil
        }
    }
}
