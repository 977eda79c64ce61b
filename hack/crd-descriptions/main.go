// Command crd-descriptions rejoins the lines of every description in the CRD files it is
// given, keeping blank-line paragraph breaks. controller-gen copies Go comments with their
// line breaks, and kubectl explain wraps text itself, so the breaks would split sentences.
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := rewrite(path); err != nil {
			fmt.Fprintln(os.Stderr, "crd-descriptions:", err)
			os.Exit(1)
		}
	}
}

func rewrite(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for i := range crd.Spec.Versions {
		if v := crd.Spec.Versions[i].Schema; v != nil && v.OpenAPIV3Schema != nil {
			reflow(v.OpenAPIV3Schema)
		}
	}
	out, err := yaml.Marshal(&crd)
	if err != nil {
		return err
	}
	// controller-gen writes no status; keep it that way.
	out = bytes.Replace(out, []byte("status:\n  acceptedNames:\n    kind: \"\"\n    plural: \"\"\n  conditions: null\n  storedVersions: null\n"), nil, 1)
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}

func reflow(s *apiextensionsv1.JSONSchemaProps) {
	paragraphs := strings.Split(s.Description, "\n\n")
	for i, p := range paragraphs {
		paragraphs[i] = strings.Join(strings.Fields(p), " ")
	}
	s.Description = strings.Join(paragraphs, "\n\n")
	for k, p := range s.Properties {
		reflow(&p)
		s.Properties[k] = p
	}
	if s.Items != nil && s.Items.Schema != nil {
		reflow(s.Items.Schema)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		reflow(s.AdditionalProperties.Schema)
	}
}
