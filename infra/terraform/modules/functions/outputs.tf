output "function_names" {
  description = "Function key (api, payments, …) to its Lambda function name."
  value       = { for k, f in aws_lambda_function.golos : k => f.function_name }
}

output "invoke_arns" {
  description = "Function key to the invoke ARN of its live alias."
  value       = { for k, a in aws_lambda_alias.live : k => a.invoke_arn }
}

output "alias_name" {
  value = "live"
}

output "function_versions" {
  description = "The version each function's last apply published: the TargetVersion of a CodeDeploy deployment."
  value       = { for k, f in aws_lambda_function.golos : k => f.version }
}

output "codedeploy_app" {
  value = aws_codedeploy_app.functions.name
}

output "log_group_names" {
  value = { for k, g in aws_cloudwatch_log_group.function : k => g.name }
}
