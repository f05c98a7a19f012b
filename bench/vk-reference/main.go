// Command vk-reference is the burst benchmark's reference virtual kubelet: virtual-kubelet's Go `node`
// library (v1.13.0, node/nodeutil) over a minimal in-memory provider, so that spillway's virtual node is
// compared with the library it is modelled on, on the same control plane and the same workload.
//
// The provider does what spillway's fake provider does with zero start latency: a pod is Running when
// CreatePod returns, and the change is pushed through the PodNotifier interface (virtual-kubelet's async
// status path; without it the library would poll every 5 s). Deletion is immediate.
//
//	vk-reference -kubeconfig PATH -node-name vk-reference [-workers 10] [-qps -1] [-rate-limit default|failures]
//
// It serves no kubelet API (logs/exec are not part of the benchmark) and runs until SIGTERM/SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// sourceHash is stamped by hack/build-tools.sh with a hash of this module's sources, so that a change to them
// rebuilds the binary (the build stamp only covers the wrapper module otherwise).
var sourceHash = "dev"

// memoryProvider keeps pods in a map; every change is reported through the registered notifier.
type memoryProvider struct {
	mu       sync.Mutex
	pods     map[string]*corev1.Pod
	notify   func(*corev1.Pod)
	nodeName string
	hostIP   string
	nextIP   atomic.Uint32
	// runningAt is when each pod (by UID) turned Running in the provider, in epoch ms, for the benchmark's
	// status propagation measurement (provider change -> Pod status seen through a watch).
	runningAt map[string]float64
}

func key(namespace, name string) string { return namespace + "/" + name }

func (p *memoryProvider) podIP() string {
	n := p.nextIP.Add(1)
	// 10.253/16 is the fake providers' range; the benchmark's cluster blackholes it, nothing is ever sent there.
	return fmt.Sprintf("10.253.%d.%d", (n>>8)&0xff, n&0xff)
}

func (p *memoryProvider) CreatePod(_ context.Context, pod *corev1.Pod) error {
	now := metav1.Now()
	running := pod.DeepCopy()
	running.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    p.hostIP,
		PodIP:     p.podIP(),
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	running.Status.PodIPs = []corev1.PodIP{{IP: running.Status.PodIP}}
	for _, c := range pod.Spec.Containers {
		running.Status.ContainerStatuses = append(running.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     "vkref://" + c.Image,
			ContainerID: "vkref://" + string(pod.UID) + "/" + c.Name,
			Ready:       true,
			Started:     ptr(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	p.mu.Lock()
	p.pods[key(pod.Namespace, pod.Name)] = running
	if _, seen := p.runningAt[string(pod.UID)]; !seen {
		p.runningAt[string(pod.UID)] = float64(time.Now().UnixNano()) / 1e6
	}
	notify := p.notify
	p.mu.Unlock()
	if notify != nil {
		notify(running.DeepCopy())
	}
	return nil
}

func (p *memoryProvider) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if existing, ok := p.pods[key(pod.Namespace, pod.Name)]; ok {
		updated := pod.DeepCopy()
		updated.Status = existing.Status
		p.pods[key(pod.Namespace, pod.Name)] = updated
	}
	return nil
}

func (p *memoryProvider) DeletePod(_ context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	existing, ok := p.pods[key(pod.Namespace, pod.Name)]
	delete(p.pods, key(pod.Namespace, pod.Name))
	notify := p.notify
	p.mu.Unlock()
	if !ok {
		return errdefs.NotFoundf("pod %s/%s not found", pod.Namespace, pod.Name)
	}
	now := metav1.Now()
	gone := existing.DeepCopy()
	gone.Status.Phase = corev1.PodSucceeded
	for i := range gone.Status.ContainerStatuses {
		gone.Status.ContainerStatuses[i].Ready = false
		gone.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", FinishedAt: now,
		}}
	}
	if notify != nil {
		notify(gone)
	}
	return nil
}

func (p *memoryProvider) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pod, ok := p.pods[key(namespace, name)]; ok {
		return pod.DeepCopy(), nil
	}
	return nil, errdefs.NotFoundf("pod %s/%s not found", namespace, name)
}

func (p *memoryProvider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

func (p *memoryProvider) GetPods(_ context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(p.pods))
	for _, pod := range p.pods {
		out = append(out, pod.DeepCopy())
	}
	return out, nil
}

// NotifyPods makes the provider a node.PodNotifier: status goes to the API at once instead of by polling.
func (p *memoryProvider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
}

// The kubelet API is not served (nodeutil starts no HTTP server without a TLS config); these only satisfy
// nodeutil.Provider.
func (p *memoryProvider) GetContainerLogs(context.Context, string, string, string, api.ContainerLogOpts) (io.ReadCloser, error) {
	return nil, errdefs.InvalidInput("not supported")
}
func (p *memoryProvider) RunInContainer(context.Context, string, string, string, []string, api.AttachIO) error {
	return errdefs.InvalidInput("not supported")
}
func (p *memoryProvider) AttachToContainer(context.Context, string, string, string, api.AttachIO) error {
	return errdefs.InvalidInput("not supported")
}
func (p *memoryProvider) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	return &statsv1alpha1.Summary{}, nil
}
func (p *memoryProvider) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
	return nil, nil
}
func (p *memoryProvider) PortForward(context.Context, string, string, int32, io.ReadWriteCloser) error {
	return errdefs.InvalidInput("not supported")
}

var _ node.PodNotifier = (*memoryProvider)(nil)

// dumpRunningAt writes {uid: epoch ms} of every pod that turned Running to path.
func (p *memoryProvider) dumpRunningAt(path string) error {
	p.mu.Lock()
	data, err := json.Marshal(p.runningAt)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func ptr[T any](v T) *T { return &v }

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
	nodeName := flag.String("node-name", "vk-reference", "the Node to register")
	internalIP := flag.String("internal-ip", "127.0.0.1", "the node's InternalIP")
	taint := flag.String("taint-provider", "vkref", "value of the virtual-kubelet.io/provider NoSchedule taint")
	workers := flag.Int("workers", 10, "pod sync workers (virtual-kubelet's CLI default is 10)")
	qps := flag.Float64("qps", -1, "client-side QPS limit; negative disables it (spillway's client has none)")
	burst := flag.Int("burst", 0, "client-side burst")
	rateLimit := flag.String("rate-limit", "default",
		"queue rate limiters: default (the library's: 10/s overall after a burst of 100) or failures (backoff on errors only)")
	traceFile := flag.String("trace-file", "", "on SIGUSR1, write {pod uid: epoch ms it turned Running} here")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Printf("vk-reference (virtual-kubelet v1.13.0 node library) source %s\n", sourceHash)
		return
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fatal("kubeconfig: %v", err)
	}
	cfg.QPS = float32(*qps)
	cfg.Burst = *burst
	cfg.UserAgent = "vk-reference"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fatal("client: %v", err)
	}

	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("4Ti"),
		corev1.ResourcePods:   resource.MustParse("10000"),
	}
	now := metav1.Now()
	nodeSpec := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: *nodeName,
			Labels: map[string]string{
				"type":                         "virtual-kubelet",
				"kubernetes.io/role":           "agent",
				"kubernetes.io/hostname":       *nodeName,
				"kubernetes.io/os":             "linux",
				"spillway.dev/bench-reference": "virtual-kubelet",
			},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{
			Key: "virtual-kubelet.io/provider", Value: *taint, Effect: corev1.TaintEffectNoSchedule,
		}}},
		Status: corev1.NodeStatus{
			Phase:       corev1.NodeRunning,
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: *internalIP}},
			NodeInfo: corev1.NodeSystemInfo{
				OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "v1.13.0-vk-reference",
			},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				Message: "Kubelet is ready", LastHeartbeatTime: now, LastTransitionTime: now,
			}},
		},
	}
	provider := &memoryProvider{
		pods: map[string]*corev1.Pod{}, nodeName: *nodeName, hostIP: *internalIP, runningAt: map[string]float64{},
	}

	// The wiring of nodeutil.NewNode, spelled out so that the queues' rate limiters can be chosen: the library
	// default (client-go's DefaultControllerRateLimiter) rate-limits every enqueue, not only retries, to an
	// overall 10/s after a burst of 100.
	limiter := func() workqueue.TypedRateLimiter[any] {
		if *rateLimit == "default" {
			return workqueue.DefaultTypedControllerRateLimiter[any]()
		}
		// Per-key exponential backoff on failures only, as spillway's queue does.
		return workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 1000*time.Second)
	}
	podInformers := informers.NewSharedInformerFactoryWithOptions(client, time.Minute, nodeutil.PodInformerFilter(*nodeName))
	otherInformers := informers.NewSharedInformerFactoryWithOptions(client, time.Minute)
	broadcaster := record.NewBroadcaster()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: *nodeName + "/pod-controller"})
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:                            client.CoreV1(),
		EventRecorder:                        recorder,
		Provider:                             provider,
		PodInformer:                          podInformers.Core().V1().Pods(),
		SecretInformer:                       otherInformers.Core().V1().Secrets(),
		ConfigMapInformer:                    otherInformers.Core().V1().ConfigMaps(),
		ServiceInformer:                      otherInformers.Core().V1().Services(),
		SyncPodsFromKubernetesRateLimiter:    limiter(),
		DeletePodsFromKubernetesRateLimiter:  limiter(),
		SyncPodStatusFromProviderRateLimiter: limiter(),
	})
	if err != nil {
		fatal("pod controller: %v", err)
	}
	nc, err := node.NewNodeController(node.NewNaiveNodeProvider(), nodeSpec, client.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(nodeutil.NodeLeaseV1Client(client), node.DefaultLeaseDuration))
	if err != nil {
		fatal("node controller: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	broadcaster.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: client.CoreV1().Events(corev1.NamespaceAll)})
	defer broadcaster.Shutdown()
	podInformers.Start(ctx.Done())
	otherInformers.Start(ctx.Done())
	go func() {
		if err := pc.Run(ctx, *workers); err != nil && ctx.Err() == nil {
			fatal("pod controller stopped: %v", err)
		}
	}()
	select {
	case <-pc.Ready():
	case <-pc.Done():
		fatal("pod controller stopped: %v", pc.Err())
	}
	go func() {
		if err := nc.Run(ctx); err != nil && ctx.Err() == nil {
			fatal("node controller stopped: %v", err)
		}
	}()
	select {
	case <-nc.Ready():
	case <-nc.Done():
		fatal("node controller stopped: %v", nc.Err())
	}
	fmt.Printf("vk-reference: node %s ready (workers %d, rate limit %s)\n", *nodeName, *workers, *rateLimit)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	for {
		select {
		case <-usr1:
			if *traceFile == "" {
				continue
			}
			if err := provider.dumpRunningAt(*traceFile); err != nil {
				fmt.Fprintf(os.Stderr, "vk-reference: trace: %v\n", err)
				continue
			}
			fmt.Println("DUMPED")
		case <-ctx.Done():
			<-pc.Done()
			<-nc.Done()
			return
		}
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vk-reference: "+format+"\n", args...)
	os.Exit(1)
}
