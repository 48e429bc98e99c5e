//go:build !(linux && cgo)

package probe

// unsupportedNVML is the binding for builds where go-nvml cannot be used
// (non-linux, or CGO_ENABLED=0): Init always fails, so GPU treats NVML as
// unavailable.
type unsupportedNVML struct{}

// NewNVML returns an NVML whose Init fails with ErrUnsupported: this build has
// no NVML binding (it needs linux and cgo).
func NewNVML() NVML { return unsupportedNVML{} }

func (unsupportedNVML) Init() error                                { return ErrUnsupported }
func (unsupportedNVML) Shutdown() error                            { return ErrNotInitialized }
func (unsupportedNVML) DeviceGetCount() (int, error)               { return 0, ErrNotInitialized }
func (unsupportedNVML) DeviceGetHandleByIndex(int) (Device, error) { return nil, ErrNotInitialized }
func (unsupportedNVML) SystemGetDriverVersion() (string, error)    { return "", ErrNotInitialized }
func (unsupportedNVML) SystemGetCudaDriverVersion() (int, error)   { return 0, ErrNotInitialized }
