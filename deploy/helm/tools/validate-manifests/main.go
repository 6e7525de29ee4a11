// validate-manifests reads Kubernetes manifests (the output of `helm template`)
// on stdin and decodes every document strictly into the Kubernetes API's own Go
// types: a wrong type, a missing apiVersion/kind, an unknown or duplicated
// field, or an unknown kind is an error. Offline: no cluster is contacted.
//
// It does not run admission (defaults, validating webhooks, CEL rules in CRDs,
// cross-field API-server validation such as "selector must match labels");
// docs/kubernetes.md says what that leaves unchecked.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

func main() {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		fail(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		fail(err)
	}
	decoder := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()

	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	var problems []string
	count := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		count++
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			problems = append(problems, fmt.Sprintf("document %d: not YAML: %v", count, err))
			continue
		}
		what := fmt.Sprintf("%s %s (%s)", meta.Kind, meta.Metadata.Name, meta.APIVersion)
		if _, _, err := decoder.Decode(doc, nil, nil); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		fmt.Printf("ok  %s\n", what)
	}
	if count == 0 {
		fail(errors.New("no documents on stdin"))
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "%d of %d documents are invalid:\n  %s\n", len(problems), count, strings.Join(problems, "\n  "))
		os.Exit(1)
	}
	fmt.Printf("%d documents valid\n", count)
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "validate-manifests: %v\n", err)
	os.Exit(2)
}
