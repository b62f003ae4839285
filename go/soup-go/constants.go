package main

import "time"

// Wire and environment names of go-plugin and of the shared soup contract,
// and soup-go's defaults: the one place they are spelled.
const (
	// go-plugin's environment, set by the host for the plugin.
	envClientCert       = "PLUGIN_CLIENT_CERT"
	envProtocolVersions = "PLUGIN_PROTOCOL_VERSIONS"
	envUnixSocketDir    = "PLUGIN_UNIX_SOCKET_DIR"
	envUnixSocketGroup  = "PLUGIN_UNIX_SOCKET_GROUP"
	envMultiplexGRPC    = "PLUGIN_MULTIPLEX_GRPC"
	envMinPort          = "PLUGIN_MIN_PORT"
	envMaxPort          = "PLUGIN_MAX_PORT"

	// envLogLevel is the one log-level variable of both implementations.
	envLogLevel = "SOUP_LOG_LEVEL"

	// Handshake defaults: go-plugin's grpc example values, so go-plugin's own
	// example host and plugins can talk to ours.
	defaultCookieKey        = "BASIC_PLUGIN"
	defaultCookieValue      = "hello"
	defaultProtocolVersions = "1"

	// pluginName is the key in the plugin set ("kv" as in go-plugin's example).
	pluginName = "kv"

	// goPluginKeyType is what go-plugin's AutoMTLS always uses (hard-coded in mtls.go).
	goPluginKeyType = "ec-p521"

	// keyNotFoundMsg is the NOT_FOUND message both implementations send.
	keyNotFoundMsg = "key not found"

	// tmpFilePrefix starts a Put's temporary file name in the store directory:
	// the prefix and 16 lowercase hex digits, nothing else (tmpFileName). The
	// Python store uses the same, so either removes the other's leftovers.
	tmpFilePrefix = ".soup-put-"

	// runDirPattern names the plugin's own temporary directory (socket and
	// temporary KV store), removed on every exit path.
	// Both names are short: a unix socket path has at most 104-108 bytes,
	// and the plugin's socket may sit in its directory in the host's.
	runDirPattern = "soup-go-p-"
	// hostSocketPattern is the private PLUGIN_UNIX_SOCKET_DIR a host hands its plugin.
	hostSocketPattern = "soup-go-h-"
	// pythonHostSocketPattern is the Python host's (handshake.py HOST_SOCKET_DIR_PREFIX).
	pythonHostSocketPattern = "soup-plugin-"
)

// Bounds of the host and the plugin.
const (
	// rpcTimeout bounds every KV/health RPC of the host.
	rpcTimeout = 5 * time.Second
	// shutdownBound: a plugin that does not answer Shutdown within this is
	// taken as hung (SIGSTOPped, wedged) and its process group is SIGKILLed.
	shutdownBound = 1 * time.Second
	// exitWait is how long a plugin has to exit after Shutdown (go-plugin's Kill waits 2 s too).
	exitWait = 2 * time.Second
	// deathWait: after a failed call, time for a dying plugin's exit status to arrive.
	deathWait = 200 * time.Millisecond
	// parentPoll is how often a plugin checks that its host still lives.
	parentPoll = 200 * time.Millisecond
	// stopBound bounds the plugin's own stop (server stop, front close); with
	// parentPoll it keeps the exit after the host's death under 2 s.
	stopBound = 1500 * time.Millisecond
	// stderrTail is how much of the plugin's stderr the host keeps.
	stderrTail = 4096
)
