"""Dashboard pages of the catalog: browsing it (`catalog`) and importing an OpenAPI document
into custom actions (`openapi`)."""
