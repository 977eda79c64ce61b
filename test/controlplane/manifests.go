package controlplane

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// ManifestObject is one object of a rendered stream: its name as kubectl prints it
// (kind.group/name in lower case, without the group for the core API), and its YAML.
type ManifestObject struct {
	Ref, YAML string
}

// ManifestObjects splits a multi-document YAML stream, such as a kustomize build, into
// its objects; empty documents are left out.
func ManifestObjects(stream string) ([]ManifestObject, error) {
	r := yaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var out []ManifestObject
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, err
		}
		if obj.Kind == "" {
			continue // an empty document
		}
		if obj.Metadata.Name == "" {
			return nil, fmt.Errorf("a %s without a name", obj.Kind)
		}
		ref := strings.ToLower(obj.Kind)
		if group, _, ok := strings.Cut(obj.APIVersion, "/"); ok {
			ref += "." + group
		}
		out = append(out, ManifestObject{Ref: ref + "/" + obj.Metadata.Name, YAML: string(doc)})
	}
}
