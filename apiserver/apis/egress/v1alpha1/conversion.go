package v1alpha1

import (
	"fmt"
	"net/url"
	"strconv"

	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
)

// addConversionFuncs registers the one conversion the server needs: query parameters into
// PreviewOptions. Written by hand; conversion-gen would be a tool for four lines.
func addConversionFuncs(scheme *runtime.Scheme) error {
	return scheme.AddConversionFunc((*url.Values)(nil), (*PreviewOptions)(nil), func(a, b any, _ conversion.Scope) error {
		return ConvertURLValuesToPreviewOptions(a.(*url.Values), b.(*PreviewOptions))
	})
}

// ConvertURLValuesToPreviewOptions reads destination, protocol and port. A port that is not
// a number is an error, which the server answers with 400 Bad Request.
func ConvertURLValuesToPreviewOptions(in *url.Values, out *PreviewOptions) error {
	out.Destination = in.Get("destination")
	out.Protocol = in.Get("protocol")
	out.Port = 0
	if raw := in.Get("port"); raw != "" {
		port, err := strconv.ParseInt(raw, 10, 32)
		if err != nil {
			return fmt.Errorf("port %q is not a number: %w", raw, err)
		}
		out.Port = int32(port)
	}
	return nil
}
