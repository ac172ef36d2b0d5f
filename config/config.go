package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/router"
)

// Where knactor's components find their ConfigMap on a cluster.
const (
	// ConfigMapName is the ConfigMap with the cluster-wide settings (400-config-knactor.yaml).
	ConfigMapName = "config-knactor"
	// SystemNamespace is the namespace knactor's own components run in (100-namespace.yaml).
	// The Deployments pass it as $SYSTEM_NAMESPACE.
	SystemNamespace = "knactor-system"
	// ExampleKey holds the ConfigMap's documentation (Knative's convention): every key with its
	// meaning and default. It is not configuration, so FromMap skips it.
	ExampleKey = "_example"
)

// Keys of the ConfigMap. The autoscaler's are the names of Knative's config-autoscaler keys of
// the same meaning, except target-utilization-percentage, which Knative spells
// container-concurrency-target-percentage and knactor names like the per-function annotation
// autoscaling.knative.dev/target-utilization-percentage.
const (
	KeyCallTimeout      = "call-timeout"
	KeyMaxQueuePerActor = "max-queue-per-actor"
	KeyMaxPayloadBytes  = "max-payload-bytes"
	KeyMaxStateBytes    = "max-state-bytes"
	KeyStoreTimeout     = "store-timeout"
	KeyIdempotencyKeys  = "idempotency-keys"
	KeyIdempotencyTTL   = "idempotency-ttl"
	KeyIdempotencyBytes = "idempotency-bytes"
	KeyScanInterval     = "timer-scan-interval"
	KeyTimerConcurrency = "timer-concurrency"

	KeyScrapeInterval                    = "scrape-interval"
	KeyScaleTimeout                      = "scale-timeout"
	KeyStableWindow                      = "stable-window"
	KeyPanicWindowPercentage             = "panic-window-percentage"
	KeyPanicThresholdPercentage          = "panic-threshold-percentage"
	KeyMaxScaleUpRate                    = "max-scale-up-rate"
	KeyMaxScaleDownRate                  = "max-scale-down-rate"
	KeyScaleToZeroGracePeriod            = "scale-to-zero-grace-period"
	KeyContainerConcurrencyTargetDefault = "container-concurrency-target-default"
	KeyTargetUtilizationPercentage       = "target-utilization-percentage"
)

// Config is the content of the config-knactor ConfigMap: cluster-wide defaults of the router and
// the autoscaler. Start from Defaults (or FromMap); the zero value is not valid.
type Config struct {
	Router     RouterDefaults
	Autoscaler AutoscalerDefaults
}

// RouterDefaults are the router's cluster-wide limits (see router.Config). A function's own
// settings (timeoutSeconds, knactor.dev/max-state-bytes) take precedence where it has them.
type RouterDefaults struct {
	// CallTimeout is a call's deadline when the function sets no timeoutSeconds (call-timeout).
	CallTimeout time.Duration
	// MaxQueuePerActor bounds the calls waiting for one actor's turn; past it callers get 429
	// (max-queue-per-actor).
	MaxQueuePerActor int
	// MaxPayloadBytes bounds a caller's request body (max-payload-bytes).
	MaxPayloadBytes int
	// MaxStateBytes bounds an actor's state when its function sets no knactor.dev/max-state-bytes
	// (max-state-bytes).
	MaxStateBytes int
	// StoreTimeout bounds each state read or write of a call while the store is unavailable,
	// then the call answers 503 (store-timeout).
	StoreTimeout time.Duration
	// IdempotencyKeys, IdempotencyTTL and IdempotencyBytes bound the idempotency keys each
	// actor remembers (idempotency-keys, idempotency-ttl, idempotency-bytes).
	IdempotencyKeys  int
	IdempotencyTTL   time.Duration
	IdempotencyBytes int
	// ScanInterval is how often each router lists the store's due-time index for timers and
	// effects it did not queue itself (timer-scan-interval); TimerConcurrency bounds the actors
	// whose due timers and effects a router runs at once (timer-concurrency).
	ScanInterval     time.Duration
	TimerConcurrency int
}

// AutoscalerDefaults are the autoscaler's own settings (see autoscaler.Config) and the
// cluster-wide defaults of every function's autoscaling (see autoscaler.Spec). A function's
// autoscaling.knative.dev/* annotation wins over the default of the same meaning.
type AutoscalerDefaults struct {
	// ScrapeInterval is how often each function's statistics are snapshotted (scrape-interval).
	ScrapeInterval time.Duration
	// ScaleTimeout bounds one scale call to the Kubernetes API (scale-timeout).
	ScaleTimeout time.Duration
	// StableWindow is the window the stable decision averages over (stable-window).
	StableWindow time.Duration
	// PanicWindowPercentage is the panic window in percent of StableWindow
	// (panic-window-percentage).
	PanicWindowPercentage float64
	// PanicThresholdPercentage enters panic mode when the panic window needs this percentage of
	// the ready pods (panic-threshold-percentage).
	PanicThresholdPercentage float64
	// MaxScaleUpRate bounds one tick's growth to this multiple of the ready pods
	// (max-scale-up-rate).
	MaxScaleUpRate float64
	// MaxScaleDownRate bounds one tick's shrinking to the ready pods divided by this
	// (max-scale-down-rate).
	MaxScaleDownRate float64
	// ScaleToZeroGracePeriod is how long the last pod stays after the stable window has seen no
	// traffic (scale-to-zero-grace-period).
	ScaleToZeroGracePeriod time.Duration
	// ContainerConcurrencyTargetDefault is the requests in flight per pod aimed at by a function
	// scaled on concurrency that sets neither a target nor containerConcurrency
	// (container-concurrency-target-default).
	ContainerConcurrencyTargetDefault float64
	// TargetUtilizationPercentage is the percentage of the target a pod is planned to run at
	// (target-utilization-percentage), in percent as in the ConfigMap: 70, not 0.7.
	TargetUtilizationPercentage float64
}

// Defaults returns the settings of a ConfigMap that sets nothing: the code's own defaults.
func Defaults() Config {
	return Config{
		Router: RouterDefaults{
			CallTimeout:      router.DefaultCallTimeout,
			MaxQueuePerActor: router.DefaultMaxQueuePerActor,
			MaxPayloadBytes:  router.DefaultMaxPayloadBytes,
			MaxStateBytes:    router.DefaultMaxStateBytes,
			StoreTimeout:     router.DefaultStoreTimeout,
			IdempotencyKeys:  router.DefaultIdempotencyKeys,
			IdempotencyTTL:   router.DefaultIdempotencyTTL,
			IdempotencyBytes: router.DefaultIdempotencyBytes,
			ScanInterval:     router.DefaultScanInterval,
			TimerConcurrency: router.DefaultTimerConcurrency,
		},
		Autoscaler: AutoscalerDefaults{
			ScrapeInterval:                    autoscaler.DefaultScrapeInterval,
			ScaleTimeout:                      autoscaler.DefaultScaleTimeout,
			StableWindow:                      autoscaler.DefaultStableWindow,
			PanicWindowPercentage:             autoscaler.DefaultPanicWindowPercentage,
			PanicThresholdPercentage:          autoscaler.DefaultPanicThresholdPercentage,
			MaxScaleUpRate:                    autoscaler.DefaultMaxScaleUpRate,
			MaxScaleDownRate:                  autoscaler.DefaultMaxScaleDownRate,
			ScaleToZeroGracePeriod:            autoscaler.DefaultScaleToZeroGracePeriod,
			ContainerConcurrencyTargetDefault: autoscaler.DefaultTargetConcurrency,
			TargetUtilizationPercentage:       autoscaler.DefaultTargetUtilization * 100,
		},
	}
}

// setting is one key of the ConfigMap and how its value is parsed into a Config.
type setting struct {
	key   string
	parse func(c *Config, value string) error
}

// settings are every key FromMap accepts, in the order of the ConfigMap's documentation.
var settings = []setting{
	durationSetting(KeyCallTimeout, func(c *Config) *time.Duration { return &c.Router.CallTimeout }),
	intSetting(KeyMaxQueuePerActor, func(c *Config) *int { return &c.Router.MaxQueuePerActor }),
	intSetting(KeyMaxPayloadBytes, func(c *Config) *int { return &c.Router.MaxPayloadBytes }),
	intSetting(KeyMaxStateBytes, func(c *Config) *int { return &c.Router.MaxStateBytes }),
	durationSetting(KeyStoreTimeout, func(c *Config) *time.Duration { return &c.Router.StoreTimeout }),
	intSetting(KeyIdempotencyKeys, func(c *Config) *int { return &c.Router.IdempotencyKeys }),
	durationSetting(KeyIdempotencyTTL, func(c *Config) *time.Duration { return &c.Router.IdempotencyTTL }),
	intSetting(KeyIdempotencyBytes, func(c *Config) *int { return &c.Router.IdempotencyBytes }),
	durationSetting(KeyScanInterval, func(c *Config) *time.Duration { return &c.Router.ScanInterval }),
	intSetting(KeyTimerConcurrency, func(c *Config) *int { return &c.Router.TimerConcurrency }),

	durationSetting(KeyScrapeInterval, func(c *Config) *time.Duration { return &c.Autoscaler.ScrapeInterval }),
	durationSetting(KeyScaleTimeout, func(c *Config) *time.Duration { return &c.Autoscaler.ScaleTimeout }),
	durationSetting(KeyStableWindow, func(c *Config) *time.Duration { return &c.Autoscaler.StableWindow }),
	floatSetting(KeyPanicWindowPercentage, func(c *Config) *float64 { return &c.Autoscaler.PanicWindowPercentage }),
	floatSetting(KeyPanicThresholdPercentage, func(c *Config) *float64 { return &c.Autoscaler.PanicThresholdPercentage }),
	floatSetting(KeyMaxScaleUpRate, func(c *Config) *float64 { return &c.Autoscaler.MaxScaleUpRate }),
	floatSetting(KeyMaxScaleDownRate, func(c *Config) *float64 { return &c.Autoscaler.MaxScaleDownRate }),
	durationSetting(KeyScaleToZeroGracePeriod, func(c *Config) *time.Duration { return &c.Autoscaler.ScaleToZeroGracePeriod }),
	floatSetting(KeyContainerConcurrencyTargetDefault, func(c *Config) *float64 { return &c.Autoscaler.ContainerConcurrencyTargetDefault }),
	floatSetting(KeyTargetUtilizationPercentage, func(c *Config) *float64 { return &c.Autoscaler.TargetUtilizationPercentage }),
}

func durationSetting(key string, field func(*Config) *time.Duration) setting {
	return setting{key, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New(`not a duration (e.g. "30s", "1m30s")`)
		}
		*field(c) = d
		return nil
	}}
}

func intSetting(key string, field func(*Config) *int) setting {
	return setting{key, func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) {
				err = ne.Err
			}
			return fmt.Errorf("not a whole number: %w", err)
		}
		*field(c) = n
		return nil
	}}
}

func floatSetting(key string, field func(*Config) *float64) setting {
	return setting{key, func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) {
				err = ne.Err
			}
			return fmt.Errorf("not a number: %w", err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return errors.New("not a finite number")
		}
		*field(c) = f
		return nil
	}}
}

// Keys returns every key the ConfigMap may set, in the order of its documentation.
func Keys() []string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return keys
}

// FromMap reads a ConfigMap's data: Defaults with every key that data sets, validated. Values
// are trimmed of surrounding space. A key FromMap does not know is an error naming it (a typo
// would otherwise silently keep the default), except ExampleKey; so is a value that does not
// parse, naming key and value. Every problem is reported at once, joined with errors.Join.
func FromMap(data map[string]string) (Config, error) {
	c := Defaults()
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(data)) {
		if key == ExampleKey {
			continue
		}
		i := slices.IndexFunc(settings, func(s setting) bool { return s.key == key })
		if i < 0 {
			errs = append(errs, fmt.Errorf("unknown key %q (known keys: %s)", key, strings.Join(Keys(), ", ")))
			continue
		}
		value := data[key]
		if err := settings[i].parse(&c, strings.TrimSpace(value)); err != nil {
			errs = append(errs, fmt.Errorf("%s: invalid value %q: %w", key, value, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// specFieldKeys maps the fields autoscaler.Spec.Validate names (annotations and setting names)
// to the ConfigMap keys that set them.
var specFieldKeys = map[string]string{
	autoscaler.AnnotationWindow:                   KeyStableWindow,
	autoscaler.AnnotationPanicWindowPercentage:    KeyPanicWindowPercentage,
	autoscaler.AnnotationPanicThresholdPercentage: KeyPanicThresholdPercentage,
	autoscaler.FieldMaxScaleUpRate:                KeyMaxScaleUpRate,
	autoscaler.FieldMaxScaleDownRate:              KeyMaxScaleDownRate,
	autoscaler.FieldScaleToZeroGracePeriod:        KeyScaleToZeroGracePeriod,
	autoscaler.AnnotationTarget:                   KeyContainerConcurrencyTargetDefault,
	autoscaler.AnnotationTargetUtilization:        KeyTargetUtilizationPercentage,
}

// Validate reports every invalid setting, each naming its ConfigMap key, joined with
// errors.Join; nil when c is valid. The autoscaling defaults are held to the bounds a function's
// own annotations are (autoscaler.Spec.Validate, Knative's bounds).
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	r := c.Router
	for _, kv := range []struct {
		key string
		v   time.Duration
	}{{KeyCallTimeout, r.CallTimeout}, {KeyStoreTimeout, r.StoreTimeout}, {KeyIdempotencyTTL, r.IdempotencyTTL}, {KeyScanInterval, r.ScanInterval}} {
		if kv.v <= 0 {
			bad(kv.key, "%v must be positive", kv.v)
		}
	}
	for _, kv := range []struct {
		key string
		v   int
	}{{KeyMaxQueuePerActor, r.MaxQueuePerActor}, {KeyMaxPayloadBytes, r.MaxPayloadBytes}, {KeyMaxStateBytes, r.MaxStateBytes},
		{KeyIdempotencyKeys, r.IdempotencyKeys}, {KeyIdempotencyBytes, r.IdempotencyBytes}, {KeyTimerConcurrency, r.TimerConcurrency}} {
		if kv.v < 1 {
			bad(kv.key, "%d must be at least 1", kv.v)
		}
	}
	a := c.Autoscaler
	if a.ScrapeInterval <= 0 {
		bad(KeyScrapeInterval, "%v must be positive", a.ScrapeInterval)
	}
	if a.ScaleTimeout <= 0 {
		bad(KeyScaleTimeout, "%v must be positive", a.ScaleTimeout)
	}
	if !(a.ContainerConcurrencyTargetDefault >= autoscaler.MinTarget) {
		bad(KeyContainerConcurrencyTargetDefault, "%v must be at least %v", a.ContainerConcurrencyTargetDefault, autoscaler.MinTarget)
	}
	if err := c.DefaultSpec().Validate(); err != nil {
		for _, e := range unjoin(err) {
			var fe *autoscaler.FieldError
			if errors.As(e, &fe) {
				if key, ok := specFieldKeys[fe.Field]; ok {
					bad(key, "%s", fe.Message)
					continue
				}
			}
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ApplyRouter sets the router's limits that the ConfigMap holds; the rest of rc is unchanged.
// Command-line flags that the operator gave explicitly should be applied after it.
func (c Config) ApplyRouter(rc *router.Config) {
	rc.CallTimeout = c.Router.CallTimeout
	rc.MaxQueuePerActor = c.Router.MaxQueuePerActor
	rc.MaxPayloadBytes = c.Router.MaxPayloadBytes
	rc.MaxStateBytes = c.Router.MaxStateBytes
	rc.StoreTimeout = c.Router.StoreTimeout
	rc.IdempotencyKeys = c.Router.IdempotencyKeys
	rc.IdempotencyTTL = c.Router.IdempotencyTTL
	rc.IdempotencyBytes = c.Router.IdempotencyBytes
	rc.ScanInterval = c.Router.ScanInterval
	rc.TimerConcurrency = c.Router.TimerConcurrency
}

// AutoscalerConfig is the autoscaler's own configuration.
func (c Config) AutoscalerConfig() autoscaler.Config {
	return autoscaler.Config{ScrapeInterval: c.Autoscaler.ScrapeInterval, ScaleTimeout: c.Autoscaler.ScaleTimeout}
}

// ApplyAutoscaler applies the cluster-wide autoscaling defaults to a function's spec s, parsed
// from the function's manifest, whose pod-template annotations are annotations:
//   - stable-window, panic-window-percentage, panic-threshold-percentage and
//     target-utilization-percentage replace the spec's value unless the function sets the
//     autoscaling.knative.dev/ annotation of the same meaning (window, ...);
//   - container-concurrency-target-default becomes the target of a function scaled on
//     concurrency that sets neither autoscaling.knative.dev/target nor containerConcurrency, as
//     in Knative (with containerConcurrency set, that is the target);
//   - max-scale-up-rate, max-scale-down-rate and scale-to-zero-grace-period have no
//     per-function annotation and always apply.
//
// target-utilization-percentage applies to functions scaled on rps as well; Knative keeps those
// at 70% whatever its config-autoscaler says.
func (c Config) ApplyAutoscaler(s autoscaler.Spec, annotations map[string]string) autoscaler.Spec {
	a := c.Autoscaler
	unset := func(annotation string) bool { _, ok := annotations[annotation]; return !ok }
	if unset(autoscaler.AnnotationWindow) {
		s.StableWindow = a.StableWindow
	}
	if unset(autoscaler.AnnotationPanicWindowPercentage) {
		s.PanicWindowPercentage = a.PanicWindowPercentage
	}
	if unset(autoscaler.AnnotationPanicThresholdPercentage) {
		s.PanicThresholdPercentage = a.PanicThresholdPercentage
	}
	if unset(autoscaler.AnnotationTargetUtilization) {
		s.TargetUtilization = a.TargetUtilizationPercentage / 100
	}
	if s.Metric != autoscaler.MetricRPS && unset(autoscaler.AnnotationTarget) && s.ContainerConcurrency == 0 {
		s.Target = a.ContainerConcurrencyTargetDefault
	}
	s.MaxScaleUpRate = a.MaxScaleUpRate
	s.MaxScaleDownRate = a.MaxScaleDownRate
	s.ScaleToZeroGracePeriod = a.ScaleToZeroGracePeriod
	return s
}

// DefaultSpec is the autoscaling of a function that sets nothing: autoscaler.DefaultSpec with
// the ConfigMap's defaults applied (ApplyAutoscaler without annotations). Its Target is
// container-concurrency-target-default; a function that sets containerConcurrency or a target
// should go through ApplyAutoscaler instead.
func (c Config) DefaultSpec() autoscaler.Spec {
	return c.ApplyAutoscaler(autoscaler.DefaultSpec(), nil)
}
