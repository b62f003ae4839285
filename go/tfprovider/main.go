// Command terraform-provider-soupexample is the smallest Terraform provider on
// terraform-plugin-framework: one data source that echoes its input. `nox -s check`
// builds it and runs `soup check plugin` against it, as a row for the most used
// go-plugin plugins there are. It judges the framework's go-plugin side, not this code.
package main

import (
	"context"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

type exampleProvider struct{}

func (exampleProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "soupexample"
}

func (exampleProvider) Schema(context.Context, provider.SchemaRequest, *provider.SchemaResponse) {}

func (exampleProvider) Configure(context.Context, provider.ConfigureRequest, *provider.ConfigureResponse) {
}

func (exampleProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{func() datasource.DataSource { return echo{} }}
}

func (exampleProvider) Resources(context.Context) []func() resource.Resource { return nil }

// echo is the trivial data source: `value` comes back as `echoed`.
type echo struct{}

type echoModel struct {
	Value  types.String `tfsdk:"value"`
	Echoed types.String `tfsdk:"echoed"`
}

func (echo) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_echo"
}

func (echo) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{Attributes: map[string]schema.Attribute{
		"value":  schema.StringAttribute{Required: true},
		"echoed": schema.StringAttribute{Computed: true},
	}}
}

func (echo) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var model echoModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &model)...)
	model.Echoed = model.Value
	resp.Diagnostics.Append(resp.State.Set(ctx, &model)...)
}

func main() {
	err := providerserver.Serve(context.Background(), func() provider.Provider { return exampleProvider{} },
		providerserver.ServeOpts{Address: "registry.terraform.io/soup/soupexample"})
	if err != nil {
		log.Fatal(err)
	}
}
